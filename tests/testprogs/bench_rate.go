// Calls main.target(i) N times at a steady RATE calls per second (0: as fast as it
// can), for measuring how many events a tracer delivers before it starts losing them.
// Prints the number of calls and the rate it reached. Usage: bench_rate N RATE
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
	// A frame of its own, so the function has Go's stack-check prologue.
	var pad [16]int
	pad[i&15] = i
	return pad[(i+1)&15] ^ i
}

func main() {
	n, rate := 100000, 0
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		rate, _ = strconv.Atoi(os.Args[2])
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		// Pace in batches of 16 calls: reading the clock on every call would cost
		// more than the calls themselves.
		if rate > 0 && i%16 == 0 {
			due := start.Add(time.Duration(int64(i) * int64(time.Second) / int64(rate)))
			for time.Now().Before(due) {
			}
		}
		sink += target(i)
	}
	el := time.Since(start)
	fmt.Printf("calls %d persec %.0f\n", n, float64(n)/el.Seconds())
}
