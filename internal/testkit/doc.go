// Package testkit holds fluent builders for the domain types in
// internal/model, shared by the tests of many packages:
//
//	n := testkit.Node("n1").CPU(8).Mem("16G").GPUs(2).Label("pool", "gpu").Build()
//	j := testkit.Job(1).Tasks(4).CPU(2).GPUs(1).Queue("q").Priority(5).Build()
//	a := testkit.Alloc(1, 0, "n1").CPU(2).GPUIndices(0).Build()
//
// Builders start from documented defaults (see each constructor) so a test
// names only what it is about. They panic on nonsense (a negative count, an
// unparsable size): a fixture that cannot be built is a bug in the test, and
// the panic message names the builder method and the bad value.
//
// It must import only the standard library and internal/model: it is imported
// by the tests of nearly every package, including sched and model, and must
// never drag server, raft or I/O into them. It holds no globals that change.
package testkit
