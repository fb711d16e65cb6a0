// Holds a known number of goroutines in steps, and prints runtime.NumGoroutine() with
// the wall clock every 100 ms, so a tracer's count can be compared at the same
// moments. Usage: goroutine_steps [STEP_MS]
// Output: "ready" once the first step holds, then "n UNIX_MS NUMGOROUTINE" lines, and
// "created TOTAL" at the end (goroutines this program started).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

func main() {
	stepMs := 1500
	if len(os.Args) > 1 {
		stepMs, _ = strconv.Atoi(os.Args[1])
	}
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				fmt.Println("n", time.Now().UnixMilli(), runtime.NumGoroutine())
			}
		}
	}()
	created := 1
	var held []chan struct{}
	var wg sync.WaitGroup
	hold := func(n int) {
		for len(held) < n {
			c := make(chan struct{})
			held = append(held, c)
			wg.Add(1)
			created++
			go func() {
				defer wg.Done()
				<-c
			}()
		}
		for len(held) > n {
			close(held[len(held)-1])
			held = held[:len(held)-1]
		}
	}
	hold(12)
	time.Sleep(200 * time.Millisecond)
	fmt.Println("ready")
	for _, n := range []int{12, 60, 25, 90, 8} {
		hold(n)
		time.Sleep(time.Duration(stepMs) * time.Millisecond)
	}
	hold(0)
	wg.Wait()
	close(stop)
	time.Sleep(150 * time.Millisecond)
	fmt.Println("created", created)
}
