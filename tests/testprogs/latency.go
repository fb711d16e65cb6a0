// Calls functions whose time each call takes it measures itself (time.Since, from
// inside the function, for the calls that return), so a tracer's latencies can be
// compared: plain calls on several goroutines, a recursion (each level timed), calls
// during which the goroutine's stack grows and moves, and calls that panic (not
// returning; recovered by the caller). Usage: latency [ROUNDS] [wait]
// With "wait", it prints "ready", waits for a line on stdin before it calls anything
// (so that a tracer can attach first), and pauses 1.5 s between its phases (so that
// they fall in different intervals of a tracer's -i 1).
// Output, at the end, per function: "NAME CALLS TOTAL_NS MAX_NS", and "panics N".
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

type total struct {
	sync.Mutex
	calls int64
	ns    int64
	max   int64
}

func (t *total) add(d time.Duration) {
	t.Lock()
	t.calls++
	t.ns += int64(d)
	if int64(d) > t.max {
		t.max = int64(d)
	}
	t.Unlock()
}

var work, recurse, grow, mayPanic total
var panics int64
var sink int

// spin runs on the CPU for d.
func spin(d time.Duration) {
	for t0 := time.Now(); time.Since(t0) < d; {
		sink++
	}
}

//go:noinline
func doWork(i int) {
	t0 := time.Now()
	if i%2 == 0 {
		spin(100 * time.Microsecond)
	} else {
		time.Sleep(200 * time.Microsecond)
	}
	work.add(time.Since(t0))
}

//go:noinline
func doRecurse(depth int) int {
	t0 := time.Now()
	n := 1
	spin(20 * time.Microsecond)
	if depth > 0 {
		n += doRecurse(depth - 1)
	}
	recurse.add(time.Since(t0))
	return n
}

//go:noinline
func doGrow(depth int) byte {
	t0 := time.Now()
	var buf [2048]byte
	buf[depth%len(buf)] = byte(depth)
	if depth > 0 {
		buf[0] += doGrow(depth - 1)
	} else {
		spin(30 * time.Microsecond)
	}
	grow.add(time.Since(t0))
	return buf[0]
}

//go:noinline
func doMayPanic(i int) {
	t0 := time.Now()
	spin(50 * time.Microsecond)
	if i%5 == 0 {
		panic("planned")
	}
	mayPanic.add(time.Since(t0))
}

func callMayPanic(i int) {
	defer func() {
		if recover() != nil {
			panics++
		}
	}()
	doMayPanic(i)
}

func main() {
	rounds := 50
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	pause := func() {}
	if len(os.Args) > 2 && os.Args[2] == "wait" {
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString('\n')
		pause = func() { time.Sleep(1500 * time.Millisecond) }
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				doWork(i)
			}
		}()
	}
	wg.Wait()
	pause()
	for i := 0; i < rounds/5; i++ {
		doRecurse(8)
	}
	// Each new goroutine starts with a small stack, which the recursion grows (and
	// moves) several times during the outer calls.
	for i := 0; i < rounds/5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			doGrow(12)
		}()
		wg.Wait()
	}
	pause()
	for i := 0; i < rounds; i++ {
		callMayPanic(i)
	}
	for _, t := range []struct {
		name string
		t    *total
	}{{"main.doWork", &work}, {"main.doRecurse", &recurse}, {"main.doGrow", &grow}, {"main.doMayPanic", &mayPanic}} {
		fmt.Println(t.name, t.t.calls, t.t.ns, t.t.max)
	}
	fmt.Println("panics", panics)
}
