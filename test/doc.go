// Package test holds dure's end-to-end tests: they build the real binary,
// start real `dure server` and `dure agent` processes on 127.0.0.1 with free
// ports, drive them with the real CLI and the Go client, and check what a
// user would see. Every process, task, cgroup and directory a test makes is
// removed by the test.
//
// DURE_TEST_BIN names a dure binary to test instead of building one, for
// machines without Go: build the suite with `go test -c ./test/` and run it
// from this directory.
package test
