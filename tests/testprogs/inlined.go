// Calls functions the compiler inlines, from several call sites, a number of times
// it counts itself, and some of the same calls out of line (through an interface,
// which the compiler cannot inline), so that a tracer's counts of inlined and
// out-of-line calls can be checked against the program's own.
//
// Usage: inlined [ROUNDS] [PAUSE_MS]. Each round:
//
//	(*counter).Value   inlined at three call sites: 1 + 10 + 5 calls; out of line
//	                   (through the Valuer interface) 2 calls
//	(*Store).Get       not inlined; sync.(*Mutex).Lock is inlined into it: 7 calls
//	sync.(*Mutex).Lock out of line (through sync.Locker) 3 calls
//
// At the end it prints its own counts:
//
//	value total T outofline O
//	lock total L outofline O
package main

import (
	"os"
	"strconv"
	"sync"
	"time"
)

type counter struct{ n int }

var valueCalls, valueOutOfLine int

// Value is small enough to be inlined at every call site.
func (c *counter) Value() int {
	valueCalls++
	return c.n
}

type Valuer interface{ Value() int }

//go:noinline
func viaInterface(v Valuer) int {
	valueOutOfLine++
	return v.Value()
}

//go:noinline
func once(c *counter) int { return c.Value() }

//go:noinline
func loop(c *counter, n int) int {
	sum := 0
	for i := 0; i < n; i++ {
		sum += c.Value()
	}
	return sum
}

type Store struct {
	mu sync.Mutex
	m  map[string]int
}

var locks, locksOutOfLine int

// Get locks with Lock inlined into it, as sync.(*Mutex).Lock is wherever its
// receiver's type is known.
//
//go:noinline
func (s *Store) Get(k string) int {
	s.mu.Lock()
	locks++
	v := s.m[k]
	s.mu.Unlock()
	return v
}

//go:noinline
func viaLocker(l sync.Locker) {
	l.Lock()
	locks++
	locksOutOfLine++
	l.Unlock()
}

var sink int

func main() {
	rounds, pause := 1, 0
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		pause, _ = strconv.Atoi(os.Args[2])
	}
	c := &counter{n: 3}
	s := &Store{m: map[string]int{"a": 1}}
	for r := 0; r < rounds; r++ {
		sink += once(c)
		sink += loop(c, 10)
		for i := 0; i < 5; i++ {
			sink += c.Value()
		}
		sink += viaInterface(c) + viaInterface(c)
		for i := 0; i < 7; i++ {
			sink += s.Get("a")
		}
		for i := 0; i < 3; i++ {
			viaLocker(&s.mu)
		}
		if pause > 0 {
			time.Sleep(time.Duration(pause) * time.Millisecond)
		}
	}
	out := "value total " + strconv.Itoa(valueCalls) + " outofline " + strconv.Itoa(valueOutOfLine) + "\n" +
		"lock total " + strconv.Itoa(locks) + " outofline " + strconv.Itoa(locksOutOfLine) + "\n"
	os.Stdout.WriteString(out)
}
