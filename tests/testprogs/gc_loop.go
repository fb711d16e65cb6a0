// Allocates for a while, a burst of garbage every 20 ms, so that the GC runs many
// cycles all along: a tracer attached mid-run sees cycles that the runtime had
// numbered from the program's start. Usage: gc_loop [SECONDS]
// Output, at the end: "cycles N" (runtime.NumGC of MemStats).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

var sink []byte

func main() {
	seconds := 3
	if len(os.Args) > 1 {
		seconds, _ = strconv.Atoi(os.Args[1])
	}
	end := time.Now().Add(time.Duration(seconds) * time.Second)
	for time.Now().Before(end) {
		for i := 0; i < 500; i++ {
			sink = make([]byte, 64<<10)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Println("cycles", ms.NumGC)
}
