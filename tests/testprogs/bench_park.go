// Goroutines parking and being made ready in a tight loop, for the cost `offcpu` adds
// to each wait: main and one worker pass a token back and forth over two unbuffered
// channels. Run with GOMAXPROCS=1, each round trip is exactly two waits, one per
// goroutine, each a gopark and, later, an execute of the parked goroutine: a sender
// finds the other goroutine runnable but not yet at its receive, and parks in the
// send ("chan send") until that receive takes the token. Usage:
// bench_park [ROUNDS]. Prints the loop's time per wait (a park/ready pair) as loop.go
// prints its time per call.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

func main() {
	n := 100000
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(pong)
	}()
	start := time.Now()
	sum := 0
	for i := 0; i < n; i++ {
		ping <- i
		sum += <-pong
	}
	el := time.Since(start)
	close(ping)
	waits := 2 * n
	fmt.Printf("sum %d\ncalls %d ns/call %.1f\n", sum, waits, float64(el.Nanoseconds())/float64(waits))
}
