// The fuzz corpus's program: small, with an inlined method, a closure, a loop and
// a deferred call, so that its tables have inline trees, several functions and
// statement lines; only the runtime, so that its binaries stay small.
//
// Its builds beside it (each an 8-byte little-endian length and a zlib stream):
//
//	go1.19-default.z       go1.19 build                    (Go 1.18 pclntab, zlib DWARF)
//	go1.21-plaindwarf.z    go1.21 build -ldflags=-compressdwarf=false  (DWARF stored plainly)
//	go1.27-stripped-pie.z  go1.27 build -buildmode=pie -ldflags="-s -w"
//
// all with CGO_ENABLED=0.
package main

type box struct{ v int }

// get is inlined into use.
func (b *box) get() int { return b.v }

//go:noinline
func use(b *box, n int) (sum int) {
	defer func() { sum++ }()
	for i := 0; i < n; i++ {
		sum += b.get() * i
	}
	return sum
}

func main() {
	println(use(&box{v: 7}, 10))
}
