// Calls functions a number of times that the tests know in advance, some of them
// while their goroutine's stack grows, so that a probe that double-counts through
// morestack shows. Usage: counts [ROUNDS] [PAUSE_MS]
//
//	main.leaf         ROUNDS × 1000 calls
//	main.recurse      ROUNDS × 8 goroutines × 200 calls (each goroutine grows its stack)
//	main.(*T).Method  ROUNDS × 10 calls
//	main.once         1 call
//
// Between rounds it sleeps PAUSE_MS, so a tracer can attach to a running process.
// It prints "round N" after each round and "done" at the end.
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
func leaf(i int) int { return i*3 + 1 }

//go:noinline
func recurse(n int) int {
	var pad [64]byte
	pad[n%64] = byte(n)
	if n == 0 {
		return int(pad[0])
	}
	return recurse(n-1) + int(pad[n%64])
}

type T struct{ n int }

//go:noinline
func (t *T) Method() { t.n++ }

//go:noinline
func once() { sink++ }

func main() {
	rounds, pause := 1, 0
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		pause, _ = strconv.Atoi(os.Args[2])
	}
	once()
	t := &T{}
	for r := 0; r < rounds; r++ {
		for i := 0; i < 1000; i++ {
			sink += leaf(i)
		}
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sink += recurse(199)
			}()
		}
		wg.Wait()
		for i := 0; i < 10; i++ {
			t.Method()
		}
		fmt.Println("round", r+1)
		if pause > 0 {
			time.Sleep(time.Duration(pause) * time.Millisecond)
		}
	}
	fmt.Println("done", t.n)
}
