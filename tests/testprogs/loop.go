// A tight loop for measuring the cost of a probe hit: calls main.target N times and
// prints how long the loop took, in nanoseconds per call. Usage: loop [N] [WAIT_MS]
// WAIT_MS: sleep before the loop, so a tracer can attach to the process.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink int

//go:noinline
func target(i int) int {
	var pad [16]int
	pad[i&15] = i
	return pad[(i+1)&15] + i
}

func main() {
	n, wait := 1000000, 0
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		wait, _ = strconv.Atoi(os.Args[2])
	}
	time.Sleep(time.Duration(wait) * time.Millisecond)
	start := time.Now()
	for i := 0; i < n; i++ {
		sink += target(i)
	}
	el := time.Since(start)
	fmt.Printf("calls %d ns/call %.1f\n", n, float64(el.Nanoseconds())/float64(n))
}
