// A CPU-bound workload that profiles itself with runtime/pprof, so that a sampling
// profiler's view of the same run can be compared with Go's own: four functions of
// different weights on two goroutines. Usage: cpuwork SECONDS PROFILE [wait]
// With "wait", it prints "ready" and waits for a line on stdin first.
// Output at the end: "done ROUNDS".
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

var sink uint64

//go:noinline
func mix(n int) uint64 {
	x := uint64(1)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func fib(n int) int {
	if n < 2 {
		return n
	}
	return fib(n-1) + fib(n-2)
}

//go:noinline
func collatz(n uint64) int {
	steps := 0
	for n != 1 {
		if n%2 == 0 {
			n /= 2
		} else {
			n = 3*n + 1
		}
		steps++
	}
	return steps
}

//go:noinline
func sieve(n int) int {
	composite := make([]bool, n)
	count := 0
	for i := 2; i < n; i++ {
		if !composite[i] {
			count++
			for j := i * i; j < n; j += i {
				composite[j] = true
			}
		}
	}
	return count
}

func main() {
	secs, _ := strconv.ParseFloat(os.Args[1], 64)
	if len(os.Args) > 3 && os.Args[3] == "wait" {
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	f, err := os.Create(os.Args[2])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	rounds := 0
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				sink += mix(400000)
				sink += uint64(fib(22))
				for i := uint64(1); i < 2000; i++ {
					sink += uint64(collatz(i))
				}
				sink += uint64(sieve(100000))
				mu.Lock()
				rounds++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	pprof.StopCPUProfile()
	f.Close()
	fmt.Println("done", rounds)
}
