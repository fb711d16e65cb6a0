// A tight loop whose probed function gets a pointer to a chain shaped like the Go
// runtime's g -> m -> curg -> stack, so that a probe can read two fields through three
// pointers, as the seed's sampling probe does with thisg.m.curg.stack in
// runtime.newstack. Usage: bench_sample [N] | bench_sample offsets
// `offsets` prints the field offsets, for a tracer that reads them by hand.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
	"unsafe"
)

type stack struct{ lo, hi uintptr }

type gee struct {
	stack stack
	pad   [4]uintptr
	m     *em
}

type em struct {
	g0   *gee
	pad  [22]uintptr
	curg *gee
}

var sink int

//go:noinline
func target(g *gee, i int) int {
	// A frame of its own, so the function has Go's stack-check prologue and a
	// `push rbp` after it, as most Go functions do.
	var pad [16]int
	pad[i&15] = int(g.stack.lo)
	return pad[(i+1)&15] + i
}

func main() {
	var g gee
	var m em
	g.stack = stack{lo: 0xc000100000, hi: 0xc000102000}
	g.m, m.g0, m.curg = &m, &g, &g
	if len(os.Args) > 1 && os.Args[1] == "offsets" {
		fmt.Printf("m %d curg %d hi %d\n", unsafe.Offsetof(g.m), unsafe.Offsetof(m.curg), unsafe.Offsetof(g.stack.hi))
		return
	}
	n := 1000000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		sink += target(&g, i)
	}
	el := time.Since(start)
	fmt.Printf("calls %d ns/call %.1f\n", n, float64(el.Nanoseconds())/float64(n))
}
