package catalog

import (
	"context"
	"strings"

	"github.com/hookd/hookd"
	"github.com/hookd/hookd/internal/config"
	"github.com/hookd/hookd/internal/engine"
)

// ServiceLister is the part of an engine that lists Swarm services. It is passed in per call,
// not kept, so the same catalog answers for any engine.
type ServiceLister interface {
	Services(ctx context.Context, label, value string) ([]engine.Service, error)
}

// ServiceMembers returns the Swarm services of runtime r on the engine sl: those labelled
// hookd.runtime=<name> (a service label), or in zero-config mode those labelled
// hookd.enable=true whose image, without its digest, is the runtime's.
func (c *Catalog) ServiceMembers(ctx context.Context, sl ServiceLister, r hookd.Runtime) ([]engine.Service, error) {
	all, err := c.ServiceMembersByRuntime(ctx, sl)
	return all[r.Name], err
}

// ServiceMembersByRuntime returns every runtime's services from one listing of sl.
func (c *Catalog) ServiceMembersByRuntime(ctx context.Context, sl ServiceLister) (map[string][]engine.Service, error) {
	var all []engine.Service
	var err error
	if c.zeroConfig {
		all, err = sl.Services(ctx, LabelEnable, "true")
	} else {
		all, err = sl.Services(ctx, LabelRuntime, "")
	}
	if err != nil {
		return nil, err
	}
	out := map[string][]engine.Service{}
	for _, s := range all {
		name := s.Labels[LabelRuntime]
		if c.zeroConfig {
			if name = serviceImage(s); name == "" {
				continue
			}
		}
		out[name] = append(out[name], s)
	}
	return out, nil
}

// serviceImage is the tag a service follows: its spec image without the digest Swarm (or
// hookd) pinned it to, normalized; "" when it names no tag.
func serviceImage(s engine.Service) string {
	ref, _, _ := strings.Cut(s.Image, "@")
	if i := strings.LastIndex(ref, ":"); i <= strings.LastIndex(ref, "/") && strings.Contains(s.Image, "@") {
		return "" // pinned by digest alone: nothing to follow
	}
	img, err := config.NormalizeImage(ref)
	if err != nil {
		return ""
	}
	return img
}

// discoverServices adds to images the tags followed by services labelled hookd.enable=true,
// where the lister can list services at all (outside a swarm it lists none).
func (c *Catalog) discoverServices(ctx context.Context) []string {
	sl, ok := c.lister.(ServiceLister)
	if !ok {
		return nil
	}
	svcs, err := sl.Services(ctx, LabelEnable, "true")
	if err != nil {
		return nil // a worker node, or the engine away: containers still define runtimes
	}
	var images []string
	for _, s := range svcs {
		if img := serviceImage(s); img != "" {
			images = append(images, img)
		}
	}
	return images
}
