// Stack growth that the program can account for: each of G goroutines recurses
// through main.deep, whose frame is about 1 KiB, to a depth of its own (BASE times
// one of 1..8, by its number modulo 8), so the runtime grows each goroutine's stack by doublings from
// its starting size until it holds that depth. Usage: ret_growth [G] [BASE]
//
// Each goroutine measures its deepest stack use, the distance from a local of its
// first frame to a local of its deepest frame (the pointer to the first is adjusted
// when the stack is copied, so the distance is the one in the final stack), and
// prints, in goroutine order:
//
//	g GOID depth DEPTH use BYTES
package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"
)

type record struct {
	goid, depth int
	use         uintptr
}

//go:noinline
func deep(n int, top *byte, r *record) int {
	var pad [120]int
	pad[n%120] = n
	if n == 0 {
		var here byte
		r.use = uintptr(unsafe.Pointer(top)) - uintptr(unsafe.Pointer(&here))
		return pad[0]
	}
	return deep(n-1, top, r) + pad[(n+1)%120]
}

// goid is the running goroutine's id, as runtime.Stack's first line says it.
func goid() int {
	var buf [64]byte
	line := buf[:runtime.Stack(buf[:], false)]
	line = bytes.TrimPrefix(line, []byte("goroutine "))
	if i := bytes.IndexByte(line, ' '); i > 0 {
		line = line[:i]
	}
	id, _ := strconv.Atoi(string(line))
	return id
}

var sink int

func main() {
	g, base := 4, 20
	if len(os.Args) > 1 {
		g, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		base, _ = strconv.Atoi(os.Args[2])
	}
	records := make([]record, g)
	var wg sync.WaitGroup
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func(r *record, depth int) {
			defer wg.Done()
			var top byte
			r.goid, r.depth = goid(), depth
			sink += deep(depth, &top, r)
		}(&records[i], base*(i%8+1))
	}
	wg.Wait()
	for _, r := range records {
		fmt.Println("g", r.goid, "depth", r.depth, "use", r.use)
	}
}
