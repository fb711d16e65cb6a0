// A small net/http service, standard library only, as a user would trace one: two
// handlers, a store guarded by a mutex holding a map, and a pool of workers fed
// through a channel. It serves on a loopback port it picks and is its own client:
// `httpsvc ROUNDS PAUSE_MS` makes ROUNDS rounds of requests (one to each handler),
// pausing between rounds, prints what it served, and exits. Each handler call is
// printed with its request's method and path, so a test can hold a probe's output
// to the program's own account.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Item is what the store keeps.
type Item struct {
	ID    int
	Name  string
	Price float64
	Tags  []string
}

// Store is a map guarded by a mutex.
type Store struct {
	mu    sync.Mutex
	items map[string]*Item
	hits  int
}

// Get returns an item and counts the lookup.
func (s *Store) Get(name string) *Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	return s.items[name]
}

var store = &Store{items: map[string]*Item{
	"apple":  {ID: 1, Name: "apple", Price: 1.25, Tags: []string{"fruit", "red"}},
	"banana": {ID: 2, Name: "banana", Price: 0.5, Tags: []string{"fruit"}},
}}

// jobs feeds the worker pool; done counts finished jobs.
var (
	jobs = make(chan int, 16)
	done sync.WaitGroup
)

func worker(id int) {
	for j := range jobs {
		work(id, j)
		done.Done()
	}
}

//go:noinline
func work(id, job int) int {
	return id*1000 + job
}

//go:noinline
func itemHandler(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("name")
	it := store.Get(name)
	fmt.Printf("item %s %s\n", r.Method, r.URL.Path)
	if it == nil {
		http.Error(w, "no such item", http.StatusNotFound)
		return
	}
	done.Add(1)
	jobs <- it.ID
	fmt.Fprintf(w, "%s %.2f\n", it.Name, it.Price)
}

//go:noinline
func statsHandler(w http.ResponseWriter, r *http.Request) {
	fmt.Printf("stats %s %s\n", r.Method, r.URL.Path)
	store.mu.Lock()
	n := store.hits
	store.mu.Unlock()
	fmt.Fprintf(w, "hits %d\n", n)
}

func get(client *http.Client, url string) {
	resp, err := client.Get(url)
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func main() {
	rounds, pause := 3, 100
	if len(os.Args) > 1 {
		rounds, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		pause, _ = strconv.Atoi(os.Args[2])
	}
	for i := 0; i < 4; i++ {
		go worker(i)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/item", itemHandler)
	mux.HandleFunc("/stats", statsHandler)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	go http.Serve(ln, mux)
	base := "http://" + ln.Addr().String()
	fmt.Println("serving", base)
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < rounds; i++ {
		time.Sleep(time.Duration(pause) * time.Millisecond)
		get(client, base+"/item?name=apple")
		get(client, base+"/stats")
	}
	done.Wait()
	fmt.Println("done", rounds)
}
