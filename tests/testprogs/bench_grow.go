// grow.go with a clock: G goroutines per round, ROUNDS rounds, each recursing DEPTH
// deep through main.deep (a frame of about 1 KiB), so every goroutine's stack doubles
// from the runtime's starting size until it holds DEPTH frames. Prints the time the
// rounds took, measured inside the program, so a tracer's own start and exit are not
// counted. Usage: bench_grow [G] [DEPTH] [ROUNDS]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var sink int

//go:noinline
func deep(n int) int {
	var pad [120]int
	pad[n%120] = n
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[(n+1)%120]
}

func main() {
	g, depth, rounds := 4, 100, 1
	if len(os.Args) > 1 {
		g, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		depth, _ = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		rounds, _ = strconv.Atoi(os.Args[3])
	}
	start := time.Now()
	for r := 0; r < rounds; r++ {
		var wg sync.WaitGroup
		for i := 0; i < g; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sink += deep(depth)
			}()
		}
		wg.Wait()
	}
	fmt.Printf("goroutines %d depth %d elapsed_ms %.3f\n", g*rounds, depth, float64(time.Since(start).Nanoseconds())/1e6)
}
