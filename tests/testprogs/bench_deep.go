// Calls main.leaf N times, each time from DEPTH nested calls of main.rec, so that a
// probe on main.leaf sees a deep stack: with the default DEPTH of 17 the stack from
// main.leaf up to runtime.main is 20 frames (leaf, 17 rec, main.main, runtime.main).
// Prints the time per leaf call. Usage: bench_deep [N] [DEPTH]
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink int

//go:noinline
func leaf(i int) int {
	// A frame of its own, so the function has Go's stack-check prologue.
	var pad [16]int
	pad[i&15] = i
	return pad[(i+1)&15] + i
}

//go:noinline
func rec(d, i int) int {
	if d == 0 {
		return leaf(i)
	}
	return rec(d-1, i) + 1
}

func main() {
	n, depth := 100000, 17
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		depth, _ = strconv.Atoi(os.Args[2])
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		sink += rec(depth-1, i)
	}
	el := time.Since(start)
	fmt.Printf("calls %d ns/call %.1f\n", n, float64(el.Nanoseconds())/float64(n))
}
