// Half CPU in user code, half in system calls: one goroutine spins, one writes to
// /dev/null, while runtime/pprof profiles the run, so that a sampling profiler's
// share of time in the kernel can be compared with Go's own (SIGPROF counts a
// thread's system time as its user time). Usage: syscalls SECONDS PROFILE
package main

import (
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

var sink uint64

//go:noinline
func spin(d time.Duration) {
	x := uint64(1)
	for t := time.Now(); time.Since(t) < d; {
		for i := 0; i < 1000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	sink = x
}

//go:noinline
func writes(d time.Duration) int {
	f, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	b := make([]byte, 64<<10)
	n := 0
	for t := time.Now(); time.Since(t) < d; {
		for i := 0; i < 100; i++ {
			if _, err := f.Write(b); err != nil {
				panic(err)
			}
			n++
		}
	}
	return n
}

func main() {
	secs, _ := strconv.Atoi(os.Args[1])
	p, err := os.Create(os.Args[2])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(p); err != nil {
		panic(err)
	}
	d := time.Duration(secs) * time.Second
	done := make(chan int)
	go func() { spin(d); done <- 0 }()
	go func() { done <- writes(d) }()
	n := <-done + <-done
	pprof.StopCPUProfile()
	p.Close()
	fmt.Println("writes", n)
}
