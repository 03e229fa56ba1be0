// Command probe is a stand-in function container for the watchdog's tests: it prints lines,
// optionally a file and one variable, sleeps and exits with the code it is told.
//
//	PROBE_LINES=n      print "line 1" .. "line n"
//	PROBE_CAT=path     print the file's content
//	PROBE_ECHO=text    print "echo: text"
//	PROBE_SLEEP=dur    sleep this long (a Go duration) before exiting
//	PROBE_EXIT=code    exit with this code (default 0)
//
// It also prints its arguments, so a test can check that no secret went into argv.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

func main() {
	fmt.Printf("argv: %q\n", os.Args)
	n, _ := strconv.Atoi(os.Getenv("PROBE_LINES"))
	for i := 1; i <= n; i++ {
		fmt.Printf("line %d\n", i)
	}
	if p := os.Getenv("PROBE_CAT"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Println("cat:", err)
		} else {
			fmt.Printf("cat: %s\n", b)
		}
	}
	if e := os.Getenv("PROBE_ECHO"); e != "" {
		fmt.Println("echo:", e)
	}
	if d, err := time.ParseDuration(os.Getenv("PROBE_SLEEP")); err == nil && d > 0 {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		select {
		case <-time.After(d):
		case s := <-sig:
			fmt.Println("signal:", s)
		}
	}
	code, _ := strconv.Atoi(os.Getenv("PROBE_EXIT"))
	fmt.Println("exit", code)
	os.Exit(code)
}
