// Generic functions instantiated with long type arguments, so that their symbol names
// (with the GC shapes of their type arguments) run past a terminal's width, called a
// number of times the tests know in advance. Usage: generic [ROUNDS]
//
//	main.Fold[…]   ROUNDS × 100 calls (one instantiation, a name of over 100 bytes)
//	main.leaf      ROUNDS × 1000 calls
//
// It prints "fold calls N" at the end.
package main

import (
	"fmt"
	"os"
	"strconv"
)

// An inventory record: the struct whose shape names the instantiation.
type Record struct {
	Name     string
	Size     int
	Tags     []string
	Location struct{ Shelf, Row int }
}

var sink, folds int

//go:noinline
func Fold[K comparable, V any](m map[K]V, f func(V) int) int {
	folds++
	n := 0
	for _, v := range m {
		n += f(v)
	}
	return n
}

//go:noinline
func leaf(i int) int { return i*3 + 1 }

func main() {
	rounds := 1
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	m := map[string]Record{"a": {Name: "bolt", Size: 3}, "b": {Name: "nut", Size: 5}}
	for r := 0; r < rounds; r++ {
		for i := 0; i < 100; i++ {
			sink += Fold(m, func(v Record) int { return v.Size })
		}
		for i := 0; i < 1000; i++ {
			sink += leaf(i)
		}
	}
	fmt.Println("fold calls", folds)
}
