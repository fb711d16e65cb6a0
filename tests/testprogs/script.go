// Calls functions with arguments the script tests know in advance, so that what a
// probe prints can be derived from this source. Usage: script [N]
//
//	main.add(i, 2*i) → 3*i          for i in 0..N-1 (N defaults to 10)
//	main.greet(name, -len(name))    for "ada", "bob", "cy", in that order
//	main.sum([]int{1, 2, 3, 4}) → 10 (a named result, total)
//	main.move(p, 5), main.move(p, -3) on &Point{X: 1, Y: 2, Name: "pt"}
//	main.flag(true, 65535, -7), main.flag(false, 1, -7)
//
// It prints "done" at the end.
package main

import (
	"fmt"
	"os"
	"strconv"
)

// Point is reached through a pointer.
type Point struct {
	X, Y int
	Name string
}

var sink int

//go:noinline
func add(a, b int) int { return a + b }

//go:noinline
func greet(name string, n int8) string { return "hello " + name + strconv.Itoa(int(n)) }

//go:noinline
func sum(xs []int) (total int) {
	for _, x := range xs {
		total += x
	}
	return total
}

//go:noinline
func move(p *Point, dx int) { p.X += dx }

//go:noinline
func flag(b bool, u uint16, i32 int32) int {
	if b {
		return int(u)
	}
	return int(i32)
}

func main() {
	n := 10
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	for i := 0; i < n; i++ {
		sink += add(i, 2*i)
	}
	for _, s := range []string{"ada", "bob", "cy"} {
		sink += len(greet(s, int8(-len(s))))
	}
	sink += sum([]int{1, 2, 3, 4})
	p := &Point{X: 1, Y: 2, Name: "pt"}
	move(p, 5)
	move(p, -3)
	sink += flag(true, 65535, -7) + flag(false, 1, -7)
	fmt.Println("done")
}
