// A program for the export tests that counts what it does itself. Each line "go" on
// stdin runs one round: main.handle(code, size) 40 times, the codes and sizes from
// fixed lists. After it, the program prints its totals since it started, one line:
//
//	totals calls.200=C calls.404=C calls.500=C count=N sum=S avg=A goid=G le.0=B le.1=B …
//
// where goid is the id of the goroutine that ran this round's calls (a new one each
// round), as runtime.Stack names it, avg is sum/count truncated as @avg computes it and le.K counts the sizes of
// @hist_log's bucket whose upper bound is K (0; then [2^(k-1), 2^k) as le = 2^k-1). It
// exits on "exit" or at the end of its input.
package main

import (
	"bufio"
	"fmt"
	"math/bits"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

var sink int

var (
	calls   = map[int]int{}
	count   int
	sum     int
	buckets = map[int]int{}
)

//go:noinline
func handle(code int, size int) {
	calls[code]++
	count++
	sum += size
	le := 0
	if size > 0 {
		le = 1<<bits.Len(uint(size)) - 1
	}
	buckets[le]++
	sink += code ^ size
}

// goid is the calling goroutine's id from the first line of its stack trace,
// "goroutine N [running]:".
func goid() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

var codes = []int{200, 200, 404, 200, 500}
var sizes = []int{0, 1, 3, 7, 100, 5000, 64, 2}

func main() {
	in := bufio.NewScanner(os.Stdin)
	i := 0
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "exit" {
			break
		}
		if line != "go" {
			continue
		}
		g := make(chan int)
		go func() {
			for n := 0; n < 40; n++ {
				handle(codes[i%len(codes)], sizes[i%len(sizes)])
				i++
			}
			g <- goid()
		}()
		round := <-g
		var b strings.Builder
		fmt.Fprintf(&b, "totals calls.200=%d calls.404=%d calls.500=%d count=%d sum=%d avg=%d goid=%d",
			calls[200], calls[404], calls[500], count, sum, sum/count, round)
		les := make([]int, 0, len(buckets))
		for le := range buckets {
			les = append(les, le)
		}
		sort.Ints(les)
		for _, le := range les {
			fmt.Fprintf(&b, " le.%d=%d", le, buckets[le])
		}
		fmt.Println(b.String())
	}
}
