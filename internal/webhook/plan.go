package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	gojson "github.com/goccy/go-json"
	"github.com/google/go-github/v89/github"

	"github.com/hookd/hookd"
)

// Push is a tagged container push announced by a delivery.
type Push struct {
	Image  string // registry_host/namespace/name:tag: host and repository lowercased, the tag as spelled
	Digest string // what the delivery says the tag points to: a hint, never trusted for the pull
	// Note says where the delivery names another registry host than registry_host: told in
	// the reason when no runtime follows the image.
	Note string
}

// errMalformed marks a body that is not a delivery of the event it claims to be.
var errMalformed = errors.New("malformed payload")

var (
	// cosignTag matches the tags cosign attaches signatures, attestations and SBOMs under.
	cosignTag = regexp.MustCompile(`^sha256-[0-9a-f]{64}\.(sig|att|sbom)$`)
	// imageTag and imagePath are Docker's reference grammar for a tag and for repository path
	// components (any case: the image is lowercased after). ASCII only, so that lowercasing
	// cannot turn an invalid value into a valid one.
	imageTag  = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)
	imagePath = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[._]|__|-+)[A-Za-z0-9]+)*)*$`)
)

// Plan reads a package or registry_package delivery. It returns the push it announces, or a
// reason why it announces nothing hookd acts on. An error means the payload is malformed.
func Plan(event string, payload []byte, registryHost string) (push Push, ignored string, err error) {
	var action string
	var pkg *github.Package
	switch event {
	// go-github's event types, decoded by goccy/go-json: a drop-in for encoding/json that reads
	// these ~6 KB deliveries about three times faster, the largest cost of the intake.
	case "package":
		var e github.PackageEvent
		err = gojson.Unmarshal(payload, &e)
		action, pkg = e.GetAction(), e.Package
	case "registry_package":
		var e github.RegistryPackageEvent
		err = gojson.Unmarshal(payload, &e)
		action, pkg = e.GetAction(), e.RegistryPackage
	default:
		if _, err := github.ParseWebHook(event, payload); err != nil {
			return Push{}, "", fmt.Errorf("%w: %v", errMalformed, err)
		}
		return Push{}, "event " + event + " is not a package push", nil
	}
	if err != nil {
		return Push{}, "", fmt.Errorf("%w: %v", errMalformed, err)
	}
	if action != "published" && action != "updated" {
		return Push{}, "action " + quoteShort(action) + " is not a push", nil
	}
	if pkg == nil {
		return Push{}, "", fmt.Errorf("%w: no package", errMalformed)
	}
	if t := strings.ToLower(pkg.GetPackageType()); t != "container" && t != "docker" {
		seen := "package type " + quoteShort(pkg.GetPackageType())
		if e := pkg.GetEcosystem(); !strings.EqualFold(e, pkg.GetPackageType()) {
			seen += " (ecosystem " + quoteShort(e) + ")"
		}
		return Push{}, seen + " is not a container", nil
	}
	pv := pkg.PackageVersion
	if pv == nil {
		return Push{}, "package_version is null: no version to follow", nil
	}
	version := "version " + quoteShort(hookd.ShortDigest(pv.GetVersion()))
	tag := pv.GetContainerMetadata().GetTag()
	switch {
	case pv.ContainerMetadata == nil:
		return Push{}, version + " has no container_metadata", nil
	case pv.ContainerMetadata.Tag == nil:
		return Push{}, version + " has no container_metadata.tag", nil
	case tag.GetName() == "":
		return Push{}, version + " is untagged (a per-platform manifest)", nil
	// cosign spells the digest in lower case; an upper-case spelling is no image tag either.
	case cosignTag.MatchString(strings.ToLower(tag.GetName())):
		return Push{}, "signature or attestation tag", nil
	case !imageTag.MatchString(tag.GetName()):
		return Push{}, "", fmt.Errorf("%w: tag %s is not an image tag", errMalformed, quoteShort(tag.GetName()))
	}
	namespace := pkg.GetNamespace()
	if namespace == "" {
		namespace = pkg.GetOwner().GetLogin()
	}
	if namespace == "" || pkg.GetName() == "" {
		return Push{}, "", fmt.Errorf("%w: package without namespace or name", errMalformed)
	}
	// Unchecked, a ':' or '/' in these would make an image of another shape than host/repo:tag.
	if !imagePath.MatchString(namespace) || !imagePath.MatchString(pkg.GetName()) {
		return Push{}, "", fmt.Errorf("%w: %s/%s is not an image repository", errMalformed, quoteShort(namespace), quoteShort(pkg.GetName()))
	}
	// Host and repository are case-insensitive on GHCR; tags are not.
	repos := []string{strings.ToLower(namespace + "/" + pkg.GetName())}
	if owner, _, linked := strings.Cut(namespace, "/"); linked {
		// GitHub's documented payloads carry namespace "owner/repo", the repository the package
		// is linked to: the image is owner/name on GHCR, owner/repo/name in the layout of the
		// older docker.pkg.github.com. The delivery's own package_url decides when it has one.
		repos = []string{strings.ToLower(owner + "/" + pkg.GetName()), repos[0]}
	}
	host := strings.ToLower(registryHost)
	repos, note, ignored := crossCheck(pkg, host, repos)
	if ignored != "" {
		return Push{}, ignored, nil
	}
	return Push{Image: host + "/" + repos[0] + ":" + tag.GetName(), Digest: tag.GetDigest(), Note: note}, "", nil
}

// crossCheck keeps the candidate repositories (lowercased namespace/name paths) that the
// delivery's own name for its image agrees with: package_version.package_url
// ("ghcr.io/owner/name:tag"), or without one registry.url ("https://ghcr.io/owner", the owner
// only). When they disagree with every candidate, the reason says so, naming both. Another host
// than registry_host is only noted: a mirror serves GHCR's images under its own host, and the
// delivery is a hint that hookd checks at registry_host anyway.
func crossCheck(pkg *github.Package, host string, repos []string) (agree []string, note, ignored string) {
	field := "package_url"
	claimedHost, claimedPath, ok := packageURL(pkg.GetPackageVersion().GetPackageURL())
	if !ok {
		field = "registry.url"
		claimedHost, claimedPath, ok = registryURL(pkg.GetRegistry().GetURL())
	}
	if !ok {
		return repos, "", ""
	}
	if claimedHost != host {
		note = field + " names registry " + quoteRef(claimedHost) + ", not registry_host " + quoteRef(host) +
			" (GitHub Enterprise: set registry_host to its container registry host)"
	}
	for _, r := range repos {
		if r == claimedPath || (field == "registry.url" && strings.HasPrefix(r, claimedPath+"/")) {
			agree = append(agree, r)
		}
	}
	if len(agree) == 0 {
		return nil, "", field + " names " + quoteRef(claimedHost+"/"+claimedPath) + ", not " + quoteRef(host+"/"+repos[0]) + " (registry_host/namespace/name)"
	}
	return agree, note, ""
}

// packageURL returns the registry host and repository path, lowercased, that a package_url
// names ("ghcr.io/Owner/name:tag", the tag possibly empty or absent). ok is false when it
// names no host and path.
func packageURL(s string) (host, path string, ok bool) {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	s, _, _ = strings.Cut(s, "@")
	host, path, _ = strings.Cut(s, "/")
	if i := strings.LastIndex(path, ":"); i >= 0 {
		path = path[:i]
	}
	if p, err := url.PathUnescape(path); err == nil {
		path = p // a nested name may come escaped (tools%2Fbuilder)
	}
	path = strings.Trim(path, "/")
	// Docker's rule for a first component that is a registry host.
	if path == "" || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return "", "", false
	}
	return strings.ToLower(host), strings.ToLower(path), true
}

// registryURL returns the host and path, lowercased, of a registry.url. GitHub's own for GHCR
// is a placeholder that is no registry (https://CONTAINER.pkg.github.com/owner): it, and any
// URL without a path, names nothing to check.
func registryURL(s string) (host, path string, ok bool) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", "", false
	}
	host, path = strings.ToLower(u.Host), strings.ToLower(strings.Trim(u.Path, "/"))
	if path == "" || strings.HasSuffix(host, ".pkg.github.com") {
		return "", "", false
	}
	return host, path, true
}

// quoteShort quotes a payload value for a response, bounded so a hostile value cannot bloat it.
func quoteShort(s string) string { return quoteN(s, 40) }

// quoteRef quotes an image reference or host, bounded like quoteShort but long enough for a
// real one to be told apart from another.
func quoteRef(s string) string { return quoteN(s, 120) }

func quoteN(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	return fmt.Sprintf("%q", s)
}
