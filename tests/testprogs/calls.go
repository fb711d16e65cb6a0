// Calls main.deep when told to, and counts the calls itself, for tests that need the
// program's own count as the oracle while gotap attaches in its own time (many probe
// statements, signals, running processes). Usage: calls [N] [EXIT] [NOW]
//
// It prints "pid P" first. For each line read from stdin it calls main.deep N times
// (default 10) and prints "calls C", the total so far; a line "gc" instead runs a
// garbage collection (runtime.GC) and prints "gcs G", the cycles the runtime has
// completed (runtime.MemStats.NumGC). At the end of stdin it prints "done C" and exits
// with status EXIT (default 0). With a third argument it does one round before reading
// stdin.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
)

var total int

//go:noinline
func deep(i int) int {
	// A frame of its own, so the function has Go's stack-check prologue.
	var pad [16]int
	pad[i&15] = i
	total++
	return pad[(i+1)&15] + i
}

func round(n int) {
	s := 0
	for i := 0; i < n; i++ {
		s += deep(i)
	}
	fmt.Println("calls", total)
	_ = s
}

func main() {
	n, code := 10, 0
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		code, _ = strconv.Atoi(os.Args[2])
	}
	fmt.Println("pid", os.Getpid())
	if len(os.Args) > 3 {
		round(n)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "gc" {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			fmt.Println("gcs", m.NumGC)
			continue
		}
		round(n)
	}
	fmt.Println("done", total)
	os.Exit(code)
}
