// Allocates enough for the GC to run a number of cycles, and starts goroutines that
// stay parked until the end. Usage: rt_gc [MB] [PARKED]
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

var keep [][]byte

func main() {
	mb, parked := 64, 10
	if len(os.Args) > 1 {
		mb, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		parked, _ = strconv.Atoi(os.Args[2])
	}
	base := runtime.NumGoroutine()
	release := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < parked; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
		}()
	}
	for i := 0; i < mb*16; i++ {
		keep = append(keep, make([]byte, 64<<10))
		if len(keep) > 64 {
			keep = keep[1:]
		}
	}
	fmt.Println("allocated", mb, "MB")
	close(release)
	wg.Wait()
	// wg.Done runs before a goroutine has finished exiting: wait until the runtime
	// has taken them all back, so a tracer of goroutine exits sees every one.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > base && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}
