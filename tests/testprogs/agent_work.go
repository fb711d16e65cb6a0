// A service for the agent's tests, counting its own calls. Each line "go" on stdin
// runs one round: main.work 1000 times and main.(*Acc).Add 10 times; after it, it
// prints its totals so far and this round's:
//
//	round N main.work=W main.(*Acc).Add=A round.main.work=w round.main.(*Acc).Add=a
//
// It exits on "exit" or at the end of its input. A test starts counting only once
// the agent says its probes are armed, so the program's numbers are the oracle.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

var sink int

var calls struct{ work, add int }

//go:noinline
func work(i int) int {
	calls.work++
	return i*7 + 1
}

type Acc struct{ n int }

//go:noinline
func (a *Acc) Add(v int) {
	calls.add++
	a.n += v
}

func main() {
	acc := &Acc{}
	in := bufio.NewScanner(os.Stdin)
	round := 0
	for in.Scan() {
		line := strings.TrimSpace(in.Text())
		if line == "exit" {
			break
		}
		if line != "go" {
			continue
		}
		w0, a0 := calls.work, calls.add
		for i := 0; i < 1000; i++ {
			sink += work(i)
		}
		for i := 0; i < 10; i++ {
			acc.Add(i)
		}
		round++
		fmt.Printf("round %d main.work=%d main.(*Acc).Add=%d round.main.work=%d round.main.(*Acc).Add=%d\n",
			round, calls.work, calls.add, calls.work-w0, calls.add-a0)
	}
}
