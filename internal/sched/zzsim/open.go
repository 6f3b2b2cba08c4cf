package zzsim

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// OpenOptions say how to read a trace file whose format needs outside facts.
type OpenOptions struct {
	// GPUsPerNode splits Philly jobs into tasks no larger than a node
	// (ReadPhilly); 0 means 8.
	GPUsPerNode int
	// NodeList is the openb node list giving the machine of an openb pod
	// list; "" means openb_node_list_all_node.csv beside the trace, if there.
	NodeList string
}

// Format names of the traces OpenTrace recognises.
const (
	FormatSWF      = "swf"
	FormatPhilly   = "philly"
	FormatOpenB    = "openb"
	formatNodeList = "openb-nodes"
)

// OpenTrace reads a trace file of any supported format, recognised by its
// first line: a CSV header naming Philly's or openb's columns, else SWF.
func OpenTrace(path string, opt OpenOptions) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	name := filepath.Base(path)
	format, r, err := sniff(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	switch format {
	case FormatPhilly:
		gpn := opt.GPUsPerNode
		if gpn <= 0 {
			gpn = 8
		}
		return ReadPhilly(r, name, gpn)
	case FormatOpenB:
		t, err := ReadOpenBPods(r, name)
		if err != nil {
			return nil, err
		}
		list := opt.NodeList
		if list == "" {
			guess := filepath.Join(filepath.Dir(path), "openb_node_list_all_node.csv")
			if _, err := os.Stat(guess); err == nil {
				list = guess
			}
		}
		if list != "" {
			nf, err := os.Open(list)
			if err != nil {
				return nil, err
			}
			defer nf.Close()
			if t.Nodes, err = ReadOpenBNodes(nf, filepath.Base(list)); err != nil {
				return nil, err
			}
		}
		return t, nil
	case formatNodeList:
		return nil, fmt.Errorf("%s is an openb node list (a cluster), not a trace: give it with --node-list and the pod list with --trace", name)
	}
	return ReadSWF(r, name)
}

// sniff looks at the first line (after decompression) to tell the format,
// and returns a reader of the whole content.
func sniff(r io.Reader) (string, io.Reader, error) {
	dr, err := maybeGunzip(r)
	if err != nil {
		return "", nil, err
	}
	br := bufio.NewReaderSize(dr, 64*1024)
	head, _ := br.Peek(256)
	first, _, _ := strings.Cut(string(head), "\n")
	first = strings.TrimPrefix(strings.TrimSpace(first), "\ufeff")
	cols := map[string]bool{}
	for _, c := range strings.Split(first, ",") {
		cols[strings.TrimSpace(c)] = true
	}
	switch {
	case cols["timestamp"] && cols["num_gpus"] && cols["duration"]:
		return FormatPhilly, br, nil
	case cols["creation_time"] && cols["num_gpu"]:
		return FormatOpenB, br, nil
	case cols["sn"] && cols["gpu"] && cols["model"]:
		return formatNodeList, br, nil
	}
	return FormatSWF, br, nil
}
