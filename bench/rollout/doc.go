// Package rollout measures, on the real engine and a loopback registry, how long hookd takes
// from a delivery to the new container answering, against the engine's own pull, create and
// start, and against a naive stop-remove-create-start updater; for hookd and the naive
// updater it also measures the longest time the published port went unanswered.
//
//	HOOKD_REQUIRE_DOCKER=1 go test -run '^$' -bench Rollout -benchtime 10x ./bench/rollout
//
// Each iteration is one rollout of each kind; -benchtime Nx sets how many.
package rollout
