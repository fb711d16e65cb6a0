// Functions whose parameters, results and locals have one of each kind of Go type,
// for the DWARF reader's tests. main prints the struct layouts with unsafe.Offsetof so
// that tests compare DWARF against what the compiler itself says.
package main

import (
	"fmt"
	"os"
	"unsafe"
)

// Point is a small struct passed by value.
type Point struct {
	X, Y int
}

// Inner is embedded in Outer.
type Inner struct {
	Tag  uint16
	Flag bool
}

// Outer has one member of each interesting kind.
type Outer struct {
	Inner
	Small  int8
	Name   string
	Count  int
	Items  []int
	Next   *Outer
	Attrs  map[string]int
	Any    interface{}
	Err    error
	Grid   [3]Point
	Ch     chan int
	Fn     func(int) string
	Weight float64
}

// Named is a defined type over a base type.
type Named int

//go:noinline
func scalars(s string, n int, b bool, i8 int8, u16 uint16) int {
	total := n + int(i8) + int(u16) + len(s)
	if b {
		total *= 2
	}
	return total
}

//go:noinline
func composite(items []int, p Point, o *Outer, m map[string]int, v interface{}, e error) (sum int, label string) {
	for _, it := range items {
		sum += it
	}
	sum += p.X + p.Y + len(m)
	if o != nil {
		label = o.Name
	}
	if v != nil && e == nil {
		label += "!"
	}
	return sum, label
}

//go:noinline
func (p *Point) Scale(k int) Named {
	p.X *= k
	p.Y *= k
	return Named(p.X + p.Y)
}

//go:noinline
func (o Outer) Describe() string {
	return fmt.Sprintf("%s/%d", o.Name, o.Count)
}

//go:noinline
func multi(a, b int) (q int, r int, err error) {
	if b == 0 {
		return 0, 0, fmt.Errorf("divide %d by zero", a)
	}
	return a / b, a % b, nil
}

// add is inlined where it is called directly and also kept out of line for the call
// through a func value: its out-of-line copy names its parameters through an
// abstract origin in optimised builds.
func add(a, b int) int {
	return a + b
}

var addFn = add

func main() {
	var o Outer
	fmt.Printf("Outer.Inner %d\n", unsafe.Offsetof(o.Inner))
	fmt.Printf("Outer.Small %d\n", unsafe.Offsetof(o.Small))
	fmt.Printf("Outer.Name %d\n", unsafe.Offsetof(o.Name))
	fmt.Printf("Outer.Count %d\n", unsafe.Offsetof(o.Count))
	fmt.Printf("Outer.Items %d\n", unsafe.Offsetof(o.Items))
	fmt.Printf("Outer.Next %d\n", unsafe.Offsetof(o.Next))
	fmt.Printf("Outer.Attrs %d\n", unsafe.Offsetof(o.Attrs))
	fmt.Printf("Outer.Any %d\n", unsafe.Offsetof(o.Any))
	fmt.Printf("Outer.Err %d\n", unsafe.Offsetof(o.Err))
	fmt.Printf("Outer.Grid %d\n", unsafe.Offsetof(o.Grid))
	fmt.Printf("Outer.Ch %d\n", unsafe.Offsetof(o.Ch))
	fmt.Printf("Outer.Fn %d\n", unsafe.Offsetof(o.Fn))
	fmt.Printf("Outer.Weight %d\n", unsafe.Offsetof(o.Weight))
	fmt.Printf("Inner.Flag %d\n", unsafe.Offsetof(o.Inner.Flag))
	fmt.Printf("Point.Y %d\n", unsafe.Offsetof(o.Grid[0].Y))
	fmt.Printf("sizeof Outer %d\n", unsafe.Sizeof(o))
	if len(os.Args) > 1 && os.Args[1] == "layout" {
		return
	}
	o.Name = "outer"
	o.Count = 3
	o.Items = []int{1, 2, 3}
	o.Attrs = map[string]int{"a": 1}
	p := Point{X: 2, Y: 5}
	fmt.Println(scalars("hello", 7, true, -3, 400))
	sum, label := composite(o.Items, p, &o, o.Attrs, p, nil)
	fmt.Println(sum, label)
	fmt.Println(p.Scale(3), o.Describe())
	fmt.Println(multi(17, 5))
	fmt.Println(add(1, 2), addFn(3, 4))
}
