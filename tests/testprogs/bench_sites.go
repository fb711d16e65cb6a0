// Tight loops for the probe sites that cost more than a function entry: a frameless
// leaf's entry (no push rbp to probe, its first instruction is single-stepped), a
// function's RET (where a return probe sits) and an inlined call site. Usage:
// bench_sites MODE [N], MODE one of leaf, ret, inline. Prints how long the loop took,
// in nanoseconds per call, as loop.go does.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink int

// leaf has no frame: Go emits neither the stack check nor push rbp for it.
//
//go:noinline
func leaf(i int) int {
	return i*7 + 3
}

// framed has a frame; its return probe sits on its one RET.
//
//go:noinline
func framed(i int) int {
	var pad [16]int
	pad[i&15] = i
	return pad[(i+1)&15] + i
}

// mix is small enough to be inlined at its one call site in main.
func mix(i int) int {
	return i ^ (i >> 3)
}

func main() {
	mode, n := "leaf", 1000000
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	if len(os.Args) > 2 {
		n, _ = strconv.Atoi(os.Args[2])
	}
	start := time.Now()
	switch mode {
	case "leaf":
		for i := 0; i < n; i++ {
			sink += leaf(i)
		}
	case "ret":
		for i := 0; i < n; i++ {
			sink += framed(i)
		}
	case "inline":
		for i := 0; i < n; i++ {
			sink += mix(i)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: bench_sites leaf|ret|inline [N]")
		os.Exit(2)
	}
	el := time.Since(start)
	fmt.Printf("calls %d ns/call %.1f\n", n, float64(el.Nanoseconds())/float64(n))
}
