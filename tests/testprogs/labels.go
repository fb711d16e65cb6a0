// Two workers of different CPU weights, each under its own pprof labels, while the
// program profiles itself with runtime/pprof: three goroutines spin all the time,
// on one P, two labelled "heavy" (with pprof.Do) and one "light" (with
// SetGoroutineLabels), so the scheduler gives the heavy worker about two thirds of
// the CPU, whatever else the machine runs (none of them sleeps, so none is woken at
// a moment of its own).
// Usage: labels SECONDS PROFILE. Output at the end: "done HEAVY LIGHT", the rounds
// of each.
package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
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
func work(end time.Time) (rounds int) {
	for time.Now().Before(end) {
		sink += spin(100000)
		rounds++
	}
	return rounds
}

func main() {
	secs, _ := strconv.ParseFloat(os.Args[1], 64)
	// One P: the scheduler's round robin (a preemption every 10 ms) is what shares
	// it, evenly among the three, however busy the machine's CPUs are.
	runtime.GOMAXPROCS(1)
	f, err := os.Create(os.Args[2])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	end := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	rounds := map[string]int{}
	add := func(worker string, n int) {
		mu.Lock()
		rounds[worker] += n
		mu.Unlock()
	}
	wg.Add(3)
	for i := 0; i < 2; i++ {
		go func() {
			defer wg.Done()
			pprof.Do(context.Background(), pprof.Labels("worker", "heavy", "weight", "2"), func(context.Context) {
				add("heavy", work(end))
			})
		}()
	}
	go func() {
		defer wg.Done()
		ctx := pprof.WithLabels(context.Background(), pprof.Labels("worker", "light", "weight", "1"))
		pprof.SetGoroutineLabels(ctx)
		add("light", work(end))
	}()
	wg.Wait()
	pprof.StopCPUProfile()
	f.Close()
	fmt.Println("done", rounds["heavy"], rounds["light"])
}
