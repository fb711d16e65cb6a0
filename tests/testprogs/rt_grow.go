// Grows goroutine stacks a number of times the test can tell in advance. Each of G
// goroutines recurses DEPTH deep through main.recurse, whose frame is about 1 KiB, so
// each goroutine's stack doubles from the runtime's starting size (2 KiB) until it
// holds DEPTH+1 frames of main.recurse. Usage: rt_grow [G] [DEPTH]
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
)

//go:noinline
func recurse(n int) int {
	var pad [120]int
	pad[n%120] = n
	if n == 0 {
		return pad[0]
	}
	return recurse(n-1) + pad[(n+1)%120]
}

func main() {
	g, depth := 8, 48
	if len(os.Args) > 1 {
		g, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		depth, _ = strconv.Atoi(os.Args[2])
	}
	sums := make([]int, g)
	var wg sync.WaitGroup
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sums[i] = recurse(depth)
		}(i)
	}
	wg.Wait()
	fmt.Println("goroutines", g, "depth", depth, "sum", sums[0])
}
