// Return probes under stress: goroutines recurse deep through main.rec, whose frame
// is large, so their stacks are copied to bigger ones in the middle of the recursion.
// Each goroutine leaves rec in one of four ways, by its number modulo 4:
//
//	0 plain:   every call returns tri(n) = n(n+1)/2.
//	1 defer:   every call returns rec(n-1) and a deferred function adds n, so the
//	           value is tri(n) only after the defer ran.
//	2 panic:   the bottom call panics; the call at n == depth/2 recovers in a deferred
//	           function and returns tri(n); the calls below it never return.
//	3 goexit:  the bottom call ends its goroutine with runtime.Goexit; no call returns.
//
// Usage: ret_stress [G] [DEPTH]. It counts, per goroutine, the calls of rec and the
// calls that really returned, and prints the sums and a checksum of the results:
//
//	calls C returns R checksum X
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
)

const (
	plain = iota
	viaDefer
	panics
	exits
)

type tally struct {
	calls, returns int
}

type bottom struct{}

func tri(n int) int { return n * (n + 1) / 2 }

//go:noinline
func rec(n, how, recoverAt int, t *tally) (r int) {
	// A large frame that the compiler keeps: it is indexed by a run-time value.
	var pad [48]int
	pad[n%48] = n
	t.calls++
	switch {
	case how == viaDefer:
		defer func() {
			r += n
			t.returns++
		}()
		if n == 0 {
			return 0
		}
		return rec(n-1, how, recoverAt, t) + pad[(n+1)%48]
	case how == panics && n == recoverAt:
		defer func() {
			if recover() != nil {
				r = tri(n)
				t.returns++
			}
		}()
	}
	if n == 0 {
		switch how {
		case panics:
			panic(bottom{})
		case exits:
			runtime.Goexit()
		}
		t.returns++
		return 0
	}
	v := rec(n-1, how, recoverAt, t)
	r = n + v + pad[(n+1)%48]
	t.returns++
	return r
}

func main() {
	g, depth := 8, 300
	if len(os.Args) > 1 {
		g, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		depth, _ = strconv.Atoi(os.Args[2])
	}
	tallies := make([]tally, g)
	results := make([]int, g)
	var wg sync.WaitGroup
	for i := 0; i < g; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			d := depth + i%7
			results[i] = rec(d, i%4, d/2, &tallies[i])
		}(i)
	}
	wg.Wait()
	calls, returns, sum := 0, 0, 0
	for i := range tallies {
		calls += tallies[i].calls
		returns += tallies[i].returns
		sum = sum*31 + results[i]
	}
	fmt.Println("calls", calls, "returns", returns, "checksum", sum)
}
