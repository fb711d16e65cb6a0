// bt_stack: prints its own stack (runtime.Callers) where gotap's backtrace tests
// probe it, on lines marked "STACK tag", so the test compares the two.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// report prints the stack of its caller: function:line, innermost first.
//
//go:noinline
func report(tag string) {
	pcs := make([]uintptr, 128)
	n := runtime.Callers(2, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var parts []string
	for {
		f, more := frames.Next()
		parts = append(parts, fmt.Sprintf("%s:%d", f.Function, f.Line))
		if !more {
			break
		}
	}
	fmt.Fprintf(os.Stdout, "STACK %s %s\n", tag, strings.Join(parts, " "))
}

//go:noinline
func leaf(n int) int {
	report("leaf")
	return n + 1
}

// mid is small enough to be inlined into its caller.
func mid(n int) int {
	return leaf(n) * 2
}

//go:noinline
func outer(n int) int {
	return mid(n) + 3
}

// grow recurses with a large frame, so its goroutine's stack grows.
//
//go:noinline
func grow(d int) int {
	var buf [512]byte
	buf[d%512] = byte(d)
	if d == 0 {
		report("grow")
		return int(buf[0])
	}
	return grow(d-1) + int(buf[d%512])
}

//go:noinline
func growing(done chan int) {
	report("growing")
	done <- grow(40)
}

func main() {
	fmt.Println(outer(1))
	done := make(chan int)
	// A closure of our own rather than `go growing(done)`, whose wrapper the
	// runtime hides from runtime.Callers (a tracer sees it).
	// The goroutine waits first, so that main parks on the channel (a test probes
	// runtime.park_m there).
	go func() {
		time.Sleep(20 * time.Millisecond)
		growing(done)
	}()
	fmt.Println(<-done)
}
