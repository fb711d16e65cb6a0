// A CPU-bound workload of fixed size for the cost of a sampling profiler: two
// goroutines each run ROUNDS rounds of arithmetic, recursion and a sieve that
// allocates (so the garbage collector runs, partly on the system stack), and the
// program prints its own wall time of that work. Usage: bench_cpu [ROUNDS]
// Output: "elapsed_ms MS" and "done ROUNDS".
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var sink [2]uint64

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
	rounds := 200
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				sink[g] += mix(400000)
				sink[g] += uint64(fib(22))
				sink[g] += uint64(sieve(100000))
			}
		}(g)
	}
	wg.Wait()
	el := time.Since(start)
	fmt.Printf("elapsed_ms %.1f\ndone %d\n", float64(el.Nanoseconds())/1e6, rounds)
}
