package validate

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDockerfile checks build/Dockerfile's promises as text (no Docker engine on the build
// machines): multi-stage, static reproducible build flags, distroless nonroot final stage that
// runs nothing (no shell), numeric non-root user.
func TestDockerfile(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(filepath.Join("..", "..", "build", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var stages [][]string // instructions per stage
	args := map[string]string{}
	for _, line := range strings.Split(strings.ReplaceAll(string(src), "\\\n", " "), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if v, ok := strings.CutPrefix(line, "ARG "); ok && len(stages) == 0 {
			k, val, _ := strings.Cut(v, "=")
			args["${"+k+"}"] = val
		}
		if strings.HasPrefix(line, "FROM ") {
			stages = append(stages, nil)
		}
		if len(stages) > 0 {
			stages[len(stages)-1] = append(stages[len(stages)-1], line)
		}
	}
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	build := strings.Join(stages[0], "\n")
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-buildvcs=false", "-buildid="} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage lacks %s", want)
		}
	}
	final := stages[len(stages)-1]
	base := strings.Fields(final[0])[1]
	if v, ok := args[base]; ok {
		base = v
	}
	if !strings.HasPrefix(base, "gcr.io/distroless/static") || !strings.HasSuffix(base, ":nonroot") {
		t.Errorf("final base = %s, want distroless static :nonroot", base)
	}
	var user, entry bool
	for _, ins := range final[1:] {
		switch verb := strings.Fields(ins)[0]; verb {
		case "RUN", "SHELL":
			t.Errorf("final stage runs %q: it has no shell", ins)
		case "USER":
			user = ins == "USER 65532:65532"
		case "ENTRYPOINT":
			entry = strings.HasPrefix(ins, "ENTRYPOINT [") // exec form: no shell needed
		}
	}
	if !user || !entry {
		t.Errorf("final stage: USER 65532:65532 %v, exec-form ENTRYPOINT %v; want both", user, entry)
	}
}
