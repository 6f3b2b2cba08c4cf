package agent

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/durehq/dure/internal/exec"
)

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	ok := func() Config { return Config{Name: "n1", Servers: []string{"127.0.0.1:7070"}, DataDir: dir} }
	neg := -1
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "no servers", edit: func(c *Config) { c.Servers = nil }, wantErr: "servers: at least one"},
		{name: "empty server", edit: func(c *Config) { c.Servers = []string{"a:1", " "} }, wantErr: "servers[1]: empty"},
		{name: "no data dir", edit: func(c *Config) { c.DataDir = "" }, wantErr: "data_dir: required"},
		{name: "bad name", edit: func(c *Config) { c.Name = "node 1" }, wantErr: `name "node 1"`},
		{name: "bad label key", edit: func(c *Config) { c.Labels = map[string]string{"=x": "y"} }, wantErr: `labels: key "=x"`},
		{name: "label value with newline", edit: func(c *Config) { c.Labels = map[string]string{"rack": "r1\nr2"} }, wantErr: "labels[rack]"},
		{name: "negative cpu", edit: func(c *Config) { c.MilliCPU = -5 }, wantErr: "millicpu: must be >= 0"},
		{name: "negative memory", edit: func(c *Config) { c.MemoryBytes = -5 }, wantErr: "memory_bytes: must be >= 0"},
		{name: "negative gpus", edit: func(c *Config) { c.GPUs = &neg }, wantErr: "gpus: must be between 0 and 1024"},
		{name: "negative custom", edit: func(c *Config) { c.Custom = map[string]int64{"lic": -1} }, wantErr: `custom["lic"]`},
		{name: "negative grace", edit: func(c *Config) { c.KillGrace = -time.Second }, wantErr: "kill_grace"},
		{name: "negative retention", edit: func(c *Config) { c.LogRetention = -time.Second }, wantErr: "log_retention"},
		{name: "negative ended-task cap", edit: func(c *Config) { c.MaxEndedTasks = -1 }, wantErr: "max_ended_tasks: must be >= 0"},
		{name: "too many labels", edit: func(c *Config) {
			c.Labels = map[string]string{}
			for i := range 65 {
				c.Labels[fmt.Sprintf("k%d", i)] = "v"
			}
		}, wantErr: "labels: at most 64, got 65"},
		{name: "long label value", edit: func(c *Config) { c.Labels = map[string]string{"k": strings.Repeat("v", 254)} }, wantErr: "labels[k]: value must be at most 253 bytes"},
		{name: "advertise with scheme", edit: func(c *Config) { c.Advertise = "http://10.0.0.5:7072" }, wantErr: `advertise "http://10.0.0.5:7072": must be host:port`},
		{name: "advertise without port", edit: func(c *Config) { c.Advertise = "10.0.0.5" }, wantErr: "must be host:port"},
		{name: "bad base env", edit: func(c *Config) { c.BaseEnv = []string{"PATH"} }, wantErr: `base_env[0] "PATH"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok()
			tc.edit(&c)
			_, err := c.withDefaults()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("withDefaults error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := Config{Servers: []string{"s:1"}, DataDir: dir}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Name == "" {
		t.Error("Name not defaulted to the hostname")
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"Listen", c.Listen, DefaultListen},
		{"KillGrace", c.KillGrace, exec.DefaultKillGrace},
		{"LogRetention", c.LogRetention, DefaultLogRetention},
		{"Exec.Dir", c.Exec.Dir, filepath.Join(dir, "tasks")},
		{"Exec.Cgroups", c.Exec.Cgroups, "auto"},
		{"Exec.CgroupParent", c.Exec.CgroupParent, "dure/" + c.Name},
		{"BaseEnv[0]", c.BaseEnv[0], "PATH=" + DefaultPath},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.field, ch.got, ch.want)
		}
	}
}
