// Captures its own stack with runtime.Callers at points inside functions that the
// compiler inlines, and prints what the Go runtime makes of each pc, so that a reader
// of .gopclntab can be checked against the runtime itself.
//
// Output, one item a line:
//
//	base <hex>                      the run-time address of main.main
//	capture <name>                  a capture point starts
//	pc <hex> <function>\t<file>\t<line>
//	                                one pc from runtime.Callers and the frame that
//	                                runtime.CallersFrames gives for it alone
//	done
//
// runtime.Callers returns one pc per frame, inlined ones included (for an inlined
// frame it is the call site plus one), so each pc maps to exactly one frame.
package main

import (
	"fmt"
	"reflect"
	"runtime"
)

var sink int

func capture(name string) {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(0, pcs)
	fmt.Println("capture", name)
	for _, pc := range pcs[:n] {
		frames := runtime.CallersFrames([]uintptr{pc})
		f, _ := frames.Next()
		fmt.Printf("pc %x %s\t%s\t%d\n", pc, f.Function, f.File, f.Line)
	}
}

// inner is small enough to be inlined into middle; it captures from inside itself.
func inner(x int) int {
	if x == 3 {
		capture("inner")
	}
	return x * 2
}

// middle inlines inner and is itself inlined into outer.
func middle(x int) int {
	y := inner(x) + 1
	return y
}

//go:noinline
func outer(x int) int {
	return middle(x) + middle(x+1)
}

type box struct{ v int }

// get is a method that is inlined into its caller.
func (b *box) get() int {
	if b.v == 7 {
		capture("method")
	}
	return b.v
}

//go:noinline
func useBox(b *box) int {
	return b.get() + 1
}

func main() {
	fmt.Printf("base %x\n", reflect.ValueOf(main).Pointer())
	sink += outer(2)
	sink += useBox(&box{v: 7})
	capture("main")
	fmt.Println("done")
}
