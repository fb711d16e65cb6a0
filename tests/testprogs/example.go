// The seed article's example: prints some text from two goroutines, enough to make
// the runtime grow a goroutine stack through fmt.Println.
package main

import (
	"fmt"
	"time"
)

func say(s string) {
	for i := 0; i < 5; i++ {
		time.Sleep(1 * time.Millisecond)
		fmt.Println(s)
	}
}

func main() {
	go say("world")
	say("hello")
}
