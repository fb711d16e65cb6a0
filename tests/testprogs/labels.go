// Two workers of different CPU weights, each under its own pprof labels, while the
// program profiles itself with runtime/pprof: "heavy" spins all the time (set with
// pprof.Do), "light" spins a third of each 3 ms (set with SetGoroutineLabels), so a
// profiler that reads the goroutines' labels sees about three heavy samples to one
// light. Usage: labels SECONDS PROFILE. Output at the end: "done HEAVY LIGHT", the
// rounds of each.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

var sink uint64

//go:noinline
func spin(n int) uint64 {
	x := uint64(1)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func heavy(end time.Time) (rounds int) {
	for time.Now().Before(end) {
		sink += spin(100000)
		rounds++
	}
	return rounds
}

//go:noinline
func light(end time.Time) (rounds int) {
	for time.Now().Before(end) {
		busy := time.Now().Add(time.Millisecond)
		for time.Now().Before(busy) {
			sink += spin(10000)
		}
		time.Sleep(2 * time.Millisecond)
		rounds++
	}
	return rounds
}

func main() {
	secs, _ := strconv.ParseFloat(os.Args[1], 64)
	f, err := os.Create(os.Args[2])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	var h, l int
	wg.Add(2)
	go func() {
		defer wg.Done()
		pprof.Do(context.Background(), pprof.Labels("worker", "heavy", "weight", "3"), func(context.Context) {
			h = heavy(end)
		})
	}()
	go func() {
		defer wg.Done()
		ctx := pprof.WithLabels(context.Background(), pprof.Labels("worker", "light", "weight", "1"))
		pprof.SetGoroutineLabels(ctx)
		l = light(end)
	}()
	wg.Wait()
	pprof.StopCPUProfile()
	f.Close()
	fmt.Println("done", h, l)
}
