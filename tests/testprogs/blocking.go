// Blocks in two ways a tracer of off-CPU time names by the runtime's wait reasons,
// and measures its own time in each (time.Now around the blocking call): receives
// on a channel that another goroutine feeds after sleeping, so that the receiver
// waits ("chan receive"), and that goroutine's time.Sleep ("sleep").
// Usage: blocking [ROUNDS] [wait]
// With "wait", it prints "ready" and waits for a line on stdin before it blocks
// (so that a tracer can attach first).
// Output at the end: "recv CALLS NS" and "sleep CALLS NS".
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"time"
)

//go:noinline
func receive(ch chan int) int {
	return <-ch
}

//go:noinline
func nap(d time.Duration) {
	time.Sleep(d)
}

func main() {
	rounds := 200
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 && os.Args[2] == "wait" {
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
	}
	ch := make(chan int)
	done := make(chan int64)
	go func() {
		var slept int64
		for i := 0; i < rounds; i++ {
			t0 := time.Now()
			nap(2 * time.Millisecond)
			slept += int64(time.Since(t0))
			ch <- i
		}
		done <- slept
	}()
	var waited int64
	for i := 0; i < rounds; i++ {
		t0 := time.Now()
		receive(ch)
		waited += int64(time.Since(t0))
	}
	slept := <-done
	fmt.Println("recv", rounds, waited)
	fmt.Println("sleep", rounds, slept)
}
