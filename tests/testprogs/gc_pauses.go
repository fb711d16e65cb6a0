// Allocates until the GC has run a number of cycles, then prints what the runtime
// measured of them (runtime/metrics) and exits at once, before another cycle can
// start. Two goroutines spin in loops without calls meanwhile, which the runtime
// must preempt by signal to stop the world: pauses long enough (tens of µs and
// more) that a tracer's own cost at their edges does not count.
// Usage: gc_pauses [MB [WAIT_MS]]: with WAIT_MS, prints "ready" and waits that long
// before it allocates (for a tracer to attach).
// Output: "cycles N" (/gc/cycles/total:gc-cycles), "pauses_ns N" (the sum of the
// /gc/pauses:seconds histogram, each bucket's count at its midpoint), "pause_count N",
// "pause_total_ns N" (runtime.MemStats.PauseTotalNs: the exact sum, read last, as
// reading it stops the world once more), then "pause_ns CYCLE NS" for each cycle
// (MemStats.PauseNs: the sum of the cycle's pauses).
package main

import (
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"
)

var keep [][]byte

var spun [2]uint64

func spin(i int, stop *uint32) {
	x := uint64(i + 1)
	for atomic.LoadUint32(stop) == 0 {
		for j := 0; j < 1<<20; j++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	spun[i] = x
}

func main() {
	mb := 128
	if len(os.Args) > 1 {
		mb, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		wait, _ := strconv.Atoi(os.Args[2])
		fmt.Println("ready")
		time.Sleep(time.Duration(wait) * time.Millisecond)
	}
	var stop uint32
	for i := range spun {
		go spin(i, &stop)
	}
	for i := 0; i < mb*16; i++ {
		keep = append(keep, make([]byte, 64<<10))
		if len(keep) > 64 {
			keep = keep[1:]
		}
	}
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/pauses:seconds"}}
	metrics.Read(s)
	h := s[1].Value.Float64Histogram()
	var sum float64
	var n uint64
	for i, c := range h.Counts {
		lo, hi := h.Buckets[i], h.Buckets[i+1]
		if math.IsInf(lo, -1) {
			lo = hi
		}
		if math.IsInf(hi, 1) {
			hi = lo
		}
		sum += float64(c) * (lo + hi) / 2
		n += c
	}
	fmt.Println("cycles", s[0].Value.Uint64())
	fmt.Println("pauses_ns", int64(sum*1e9))
	fmt.Println("pause_count", n)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Println("pause_total_ns", ms.PauseTotalNs)
	for n := uint32(1); n <= ms.NumGC; n++ {
		if ms.NumGC-n < uint32(len(ms.PauseNs)) {
			fmt.Println("pause_ns", n, ms.PauseNs[(n+uint32(len(ms.PauseNs))-1)%uint32(len(ms.PauseNs))])
		}
	}
}
