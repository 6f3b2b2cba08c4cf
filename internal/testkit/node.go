package testkit

import (
	"fmt"
	"time"

	"github.com/durehq/dure/internal/model"
)

// Epoch is the fixed instant fixtures are built around, so tests never read
// the clock. Job(id) is submitted at Epoch + id seconds by default.
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// NodeBuilder builds a *model.Node.
type NodeBuilder struct{ n model.Node }

// Node starts a ready, undrained node with no resources, address
// "127.0.0.1:0" and RegisteredAt = Epoch.
func Node(name string) *NodeBuilder {
	return &NodeBuilder{n: model.Node{
		Name:            name,
		Address:         "127.0.0.1:0",
		Status:          model.NodeReady,
		RegisteredAt:    Epoch,
		StatusChangedAt: Epoch,
	}}
}

// CPU sets the capacity in whole cores.
func (b *NodeBuilder) CPU(cores int) *NodeBuilder {
	nonNeg("Node.CPU", int64(cores))
	b.n.Capacity.MilliCPU = int64(cores) * 1000
	return b
}

// MilliCPU sets the capacity in millicores.
func (b *NodeBuilder) MilliCPU(m int64) *NodeBuilder {
	nonNeg("Node.MilliCPU", m)
	b.n.Capacity.MilliCPU = m
	return b
}

// Mem sets the memory capacity from a size string ("16G"); see Bytes.
func (b *NodeBuilder) Mem(size string) *NodeBuilder {
	b.n.Capacity.MemoryBytes = Bytes(size)
	return b
}

// Scratch sets the scratch disk capacity from a size string.
func (b *NodeBuilder) Scratch(size string) *NodeBuilder {
	b.n.Capacity.ScratchBytes = Bytes(size)
	return b
}

// Custom sets a counted custom resource (licences, FPGA slots, …).
func (b *NodeBuilder) Custom(name string, n int64) *NodeBuilder {
	nonNeg("Node.Custom", n)
	if b.n.Capacity.Custom == nil {
		b.n.Capacity.Custom = map[string]int64{}
	}
	b.n.Capacity.Custom[name] = n
	return b
}

// GPUs gives the node n devices with indices 0..n-1 (model "H100" unless
// GPUModel says otherwise) and sets Capacity.GPUs to n.
func (b *NodeBuilder) GPUs(n int) *NodeBuilder {
	nonNeg("Node.GPUs", int64(n))
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return b.GPUIndices(idx...)
}

// GPUIndices gives the node devices with exactly these indices (for nodes
// where some devices are hidden or broken) and sets Capacity.GPUs to match.
func (b *NodeBuilder) GPUIndices(idx ...int) *NodeBuilder {
	modelName := "H100"
	if len(b.n.GPUs) > 0 {
		modelName = b.n.GPUs[0].Model
	}
	b.n.GPUs = b.n.GPUs[:0]
	for _, i := range idx {
		if i < 0 {
			panic(fmt.Sprintf("testkit: Node.GPUIndices(%v): index %d is negative", idx, i))
		}
		b.n.GPUs = append(b.n.GPUs, model.GPU{
			Index:       i,
			UUID:        fmt.Sprintf("GPU-%s-%d", b.n.Name, i),
			Model:       modelName,
			MemoryBytes: 80 << 30,
		})
	}
	b.n.Capacity.GPUs = int64(len(idx))
	return b
}

// GPUModel sets the model name of every device (call after GPUs).
func (b *NodeBuilder) GPUModel(m string) *NodeBuilder {
	for i := range b.n.GPUs {
		b.n.GPUs[i].Model = m
	}
	return b
}

// Label sets a node label.
func (b *NodeBuilder) Label(k, v string) *NodeBuilder {
	if b.n.Labels == nil {
		b.n.Labels = map[string]string{}
	}
	b.n.Labels[k] = v
	return b
}

// Down marks the node down (missed heartbeats).
func (b *NodeBuilder) Down() *NodeBuilder {
	b.n.Status = model.NodeDown
	b.n.StatusReason = "missed heartbeat"
	return b
}

// Drain marks the node draining with a reason.
func (b *NodeBuilder) Drain(reason string) *NodeBuilder {
	b.n.Drain = true
	b.n.DrainReason = reason
	return b
}

// Address sets the agent address.
func (b *NodeBuilder) Address(a string) *NodeBuilder {
	b.n.Address = a
	return b
}

// Build returns a fresh copy, so one builder can stamp out several nodes.
func (b *NodeBuilder) Build() *model.Node { return b.n.Copy() }

func nonNeg(method string, v int64) {
	if v < 0 {
		panic(fmt.Sprintf("testkit: %s(%d): must not be negative", method, v))
	}
}
