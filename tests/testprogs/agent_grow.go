// A program for the agent's stackgrow test that grows goroutine stacks on demand, a
// number of times the test can tell in advance (as rt_grow.go). Each line "go" on
// stdin runs one round: G new goroutines each recurse DEPTH deep through
// main.recurse, whose frame is about 1 KiB, so each one's stack doubles from the
// runtime's starting size until it holds DEPTH+1 frames. After a round it prints
//
//	round N goroutines=G depth=DEPTH
//
// It exits on "exit" or at the end of its input. Usage: agent_grow G DEPTH
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
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

var sink int

func main() {
	g, depth := 8, 48
	if len(os.Args) > 2 {
		g, _ = strconv.Atoi(os.Args[1])
		depth, _ = strconv.Atoi(os.Args[2])
	}
	in := bufio.NewScanner(os.Stdin)
	round := 0
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "exit" {
			break
		}
		if line != "go" {
			continue
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
		sink += sums[0]
		round++
		fmt.Printf("round %d goroutines=%d depth=%d\n", round, g, depth)
	}
}
