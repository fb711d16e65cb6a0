// One Go value of each kind, held in a struct, passed as arguments and kept in a
// local, each printed by the program itself with fmt.Printf("%+v"): the oracle a
// tracer's pretty-printer is held to. Lines start with the function that printed
// them. `deep` lines print what a pointer field points to, for `$x$$`.
package main

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"
	"unsafe"
)

type Point struct {
	X, Y int
}

type Nested struct {
	P     Point
	Label string
}

type Numbers struct {
	B    bool
	I8   int8
	I16  int16
	I32  int32
	I64  int64
	I    int
	U8   uint8
	U16  uint16
	U32  uint32
	U64  uint64
	U    uint
	Ptr  uintptr
	F32  float32
	F64  float64
	Neg  float64
	Big  float64
	Inf  float64
	C64  complex64
	C128 complex128
}

type Composites struct {
	S     string
	Bytes []byte
	Ints  []int
	Strs  []string
	Empty []int
	Arr   [3]int
	M     map[string]int
	MI    map[int]string
	MNil  map[string]int
	P     *Point
	PNil  *Point
	Ch    chan int
	Fn    func()
	N     Nested
}

type Dynamic struct {
	Any     any
	AnyS    any
	AnyI    any
	AnyF    any
	AnyNil  any
	Err     error
	Wrapped error
	ErrNil  error
	D       time.Duration
	T       time.Time
	Zoned   time.Time
}

type Zoo struct {
	Num  Numbers
	Comp Composites
	Dyn  Dynamic
}

// Node and Tree are recursive types: a list and a binary tree.
type Node struct {
	Val  int
	Next *Node
}

type Tree struct {
	Left, Right *Tree
	Key         string
}

func hello() {}

func build(seed int) Zoo {
	ch := make(chan int, 4)
	ch <- 1
	ch <- 2
	base := errors.New("boom")
	return Zoo{
		Num: Numbers{
			B: true, I8: -8, I16: -1600, I32: -320000, I64: -64000000000, I: seed,
			U8: 200, U16: 60000, U32: 4000000000, U64: 18000000000000000000, U: 7,
			Ptr: 0x1234, F32: 0.1, F64: 3.14159, Neg: -2.5e-7, Big: 1e300, Inf: math.Inf(1),
			C64: complex(1.5, -2), C128: complex(-0.25, 1e21),
		},
		Comp: Composites{
			S:     "hello, zoo",
			Bytes: []byte("hi"),
			Ints:  []int{1, 2, 3},
			Strs:  []string{"fruit", "red"},
			Arr:   [3]int{7, 8, 9},
			M:     map[string]int{"b": 2, "a": 1, "c": 3},
			MI:    map[int]string{3: "c", 1: "a", 2: "b"},
			P:     &Point{X: 1, Y: 2},
			Ch:    ch,
			Fn:    hello,
			N:     Nested{P: Point{X: 3, Y: 4}, Label: "nest"},
		},
		Dyn: Dynamic{
			Any:     Point{X: 2, Y: 5},
			AnyS:    "dyn",
			AnyI:    42,
			AnyF:    2.5,
			Err:     base,
			Wrapped: fmt.Errorf("wrap: %w", base),
			D:       1500 * time.Millisecond,
			T:       time.Date(2009, 11, 10, 23, 0, 0, 5, time.UTC),
			Zoned:   time.Date(2024, 2, 29, 12, 30, 15, 0, time.FixedZone("EST", -5*3600)),
		},
	}
}

//go:noinline
func showZoo(z *Zoo) {
	fmt.Printf("showZoo %+v\n", z)
	fmt.Printf("deep showZoo P %+v\n", *z.Comp.P)
	// The standard types one by one, for a binary without DWARF, where a script
	// names them with @cast at these offsets from z.
	c, d := &z.Comp, &z.Dyn
	fmt.Printf("field S %d %+v\n", offset(z, &c.S), c.S)
	fmt.Printf("field Bytes %d %+v\n", offset(z, &c.Bytes), c.Bytes)
	fmt.Printf("field Ints %d %+v\n", offset(z, &c.Ints), c.Ints)
	fmt.Printf("field Strs %d %+v\n", offset(z, &c.Strs), c.Strs)
	fmt.Printf("field M %d %+v\n", offset(z, &c.M), c.M)
	fmt.Printf("field MI %d %+v\n", offset(z, &c.MI), c.MI)
	fmt.Printf("field Err %d %+v\n", offset(z, &d.Err), d.Err)
	fmt.Printf("field Wrapped %d %+v\n", offset(z, &d.Wrapped), d.Wrapped)
	fmt.Printf("field AnyS %d %+v\n", offset(z, &d.AnyS), d.AnyS)
	fmt.Printf("field D %d %+v\n", offset(z, &d.D), d.D)
	fmt.Printf("field T %d %+v\n", offset(z, &d.T), d.T)
	fmt.Printf("field Zoned %d %+v\n", offset(z, &d.Zoned), d.Zoned)
	fmt.Printf("lens %d %d %d %d %d %d %d %d\n", len(c.S), len(c.Strs), cap(c.Strs), len(c.M), len(c.MNil), len(c.Ch), cap(c.Ch), len(c.Arr))
	f := z.Num.F64
	fmt.Printf("floats %f %e %.3g %10.2f|%-12.3e|%+.1f %f %e\n", f, f, f, f, f, f, z.Num.F32, z.Num.F32)
}

// offset is where field p is in z.
func offset(z *Zoo, p any) uintptr {
	var addr uintptr
	switch v := p.(type) {
	case *string:
		addr = uintptr(unsafe.Pointer(v))
	case *[]byte:
		addr = uintptr(unsafe.Pointer(v))
	case *[]int:
		addr = uintptr(unsafe.Pointer(v))
	case *[]string:
		addr = uintptr(unsafe.Pointer(v))
	case *map[string]int:
		addr = uintptr(unsafe.Pointer(v))
	case *map[int]string:
		addr = uintptr(unsafe.Pointer(v))
	case *error:
		addr = uintptr(unsafe.Pointer(v))
	case *any:
		addr = uintptr(unsafe.Pointer(v))
	case *time.Duration:
		addr = uintptr(unsafe.Pointer(v))
	case *time.Time:
		addr = uintptr(unsafe.Pointer(v))
	}
	return addr - uintptr(unsafe.Pointer(z))
}

//go:noinline
func showParts(n Numbers, c Composites, d Dynamic) int {
	fmt.Printf("showParts n %+v\n", n)
	fmt.Printf("showParts c %+v\n", c)
	fmt.Printf("showParts d %+v\n", d)
	return n.I + len(c.S) + int(d.D)
}

//go:noinline
func locals(seed int) int {
	z := build(seed)
	fmt.Printf("locals %+v\n", z)
	return z.Num.I + len(z.Comp.S) + len(z.Comp.M) // locals: probe here
}

//go:noinline
func walk(n *Node, t *Tree) int {
	fmt.Printf("walk %+v %+v\n", n, t)
	return n.Val + len(t.Key)
}

// showErr is called with an error whose message is not a field (fmt calls its
// Error method).
//
//go:noinline
func showErr(err error) {
	fmt.Printf("showErr %+v\n", err)
}

func list(n int) *Node {
	var head *Node
	for i := n; i > 0; i-- {
		head = &Node{Val: i, Next: head}
	}
	return head
}

func tree(depth int, key string) *Tree {
	if depth == 0 {
		return nil
	}
	return &Tree{Left: tree(depth-1, key+"l"), Right: tree(depth-1, key+"r"), Key: key}
}

func main() {
	seed := 5
	if len(os.Args) > 1 {
		fmt.Sscan(os.Args[1], &seed)
	}
	z := build(seed)
	showZoo(&z)
	showParts(z.Num, z.Comp, z.Dyn)
	locals(seed)
	walk(list(100), tree(12, "t"))
	showErr(&os.PathError{Op: "open", Path: "/nowhere", Err: os.ErrNotExist})
}
