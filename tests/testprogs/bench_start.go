// Prints the wall-clock time (Unix nanoseconds) as its very first act, so that a
// tracer that starts it held (-c) can be timed from its own start to the moment the
// probes are armed and the program runs. Then it does what the seed's example does:
// two goroutines print a few lines, enough to make the runtime grow a stack.
package main

import (
	"fmt"
	"os"
	"time"
)

func say(s string) {
	for i := 0; i < 5; i++ {
		time.Sleep(1 * time.Millisecond)
		fmt.Println(s)
	}
}

func main() {
	fmt.Fprintf(os.Stdout, "start %d\n", time.Now().UnixNano())
	go say("world")
	say("hello")
}
