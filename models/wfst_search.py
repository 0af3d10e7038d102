"""The compiled WFST search over a Paraformer's token posteriors (numba, GIL released).

This is FunASR's modified Kaldi ``LatticeFasterOnlineDecoder`` as its C++
runtime runs it on the offline Paraformer (the project's LM contract, §2.3):
one search frame per CIF token position, self-loops skipped while emitting
(so every position emits exactly one real token), pruning by ``beam`` and
``min_active``, an epsilon closure after each frame, BiasLm hotword scores
on every emitted token, and the best final token traced back.

It is a scalar loop because exact agreement with the reference needs its
order of work: tokens are visited in the order of Kaldi's ``HashList`` (the
buckets in the order first used, then insertion order within a bucket), arcs
in stored order, ties resolved as Kaldi resolves them, all in float32.  A
Python loop over arcs would cost seconds per segment on a full-size graph;
compiled (:func:`models.jit.compiled`: cached on disk, without the GIL), a
frame costs tens of microseconds.

The lattice pruning Kaldi does every 25 frames and at the end never touches
the current frame or the best path, so it is left out; ``lattice_beam``
therefore has no effect here, as it has none on the reference's 1-best.
"""
from __future__ import annotations

import numpy as np

from .jit import compiled

INF = np.float32(np.inf)


@compiled
def bias_score(child_begin, child_label, child_node, root_child, fail, backoff, final, is_final,
               chain_backoff, inner_label, increment, vocab_size, state, k):
    """BiasLmScore(state, k) → (score, new state): the contract's §3.4 rule, walked.

    :func:`search` takes a shortcut for most tokens (see there) and calls this
    only where the walk can stop above the root.
    """
    if k < 1 or k > vocab_size:
        return np.float32(0.0), 0
    score = np.float32(0.0)
    cur = state
    while True:
        prev = cur
        child = -1
        if cur == 0:
            if k < root_child.size:
                child = root_child[k]
        else:
            lo = child_begin[cur]
            hi = child_begin[cur + 1]
            while lo < hi:  # binary search over the sorted labels
                mid = (lo + hi) // 2
                if child_label[mid] < k:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < child_begin[cur + 1] and child_label[lo] == k:
                child = child_node[lo]
        if child >= 0:
            score = np.float32(score + increment)
            if is_final[child]:
                score = np.float32(score + final[child])
            cur = child
            break
        if cur != 0:
            score = np.float32(score + backoff[cur])
            cur = fail[cur]
        if prev == 0 and cur == 0:
            break
    return score, cur


@compiled
def _select(values, n, k):
    """The k-th smallest of ``values[:n]`` (``std::nth_element``'s answer), reordering them in place."""
    lo = 0
    hi = n - 1
    while lo < hi:
        pivot = values[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                tmp = values[i]
                values[i] = values[j]
                values[j] = tmp
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


@compiled
def _hash_order(t_state, lo, count, frame_hash, bucket_stamp, bucket_rank, stamp, ranks, starts, order):
    """Write into ``order[:count]`` the tokens ``lo:lo+count`` in Kaldi HashList order.

    Buckets (``state % hash size``) come in the order they were first used,
    tokens within a bucket in insertion (= creation) order.
    """
    n_ranks = 0
    for i in range(count):
        b = t_state[lo + i] % frame_hash
        if bucket_stamp[b] != stamp:
            bucket_stamp[b] = stamp
            bucket_rank[b] = n_ranks
            n_ranks += 1
        ranks[i] = bucket_rank[b]
    for r in range(n_ranks + 1):
        starts[r] = 0
    for i in range(count):
        starts[ranks[i] + 1] += 1
    for r in range(n_ranks):
        starts[r + 1] += starts[r]
    for i in range(count):
        order[starts[ranks[i]]] = lo + i
        starts[ranks[i]] += 1


#: ``search`` status: done, or the scratch was too small (the caller grows it and runs again).
DONE, OUT_OF_TOKENS, OUT_OF_QUEUE = 0, 1, 2


@compiled
def search(arc_begin, eps_begin, ilabels, olabels, weights, nextstates, finals, start,
           loglikes, beam, min_active, beam_delta, hash_ratio, hash_size,
           state_tok, t_tot, t_state, t_bp, t_bias, t_il, t_ol, t_lcost, queue,
           bucket_stamp, bucket_rank, stamp_box, ranks, starts, order, select_buf,
           use_bias, child_begin, child_label, child_node, root_child, fail, backoff, final, is_final,
           chain_backoff, inner_label, increment, vocab_size):
    """Decode ``loglikes`` ([T, V] float32, already ``am_scale × log p``; column ``l-1`` is TLG ilabel ``l``).

    The graph comes as :class:`models.wfst_decoder.SearchGraph` arrays: state
    s's emitting arcs (self-loops dropped) are ``arc_begin[s]:eps_begin[s]``,
    its input-epsilon arcs ``eps_begin[s]:arc_begin[s+1]``, each in stored order.

    Everything else is caller-owned scratch, never reallocated here (numba
    reference-counts arrays that a loop may rebind, which costs more than the
    search itself): ``state_tok`` (int32 per graph state, all -1, left all -1),
    the token arrays ``t_*`` and ``select_buf``/``ranks``/``order`` (capacity C),
    ``starts`` (C + 1), ``queue`` (Q), the bucket arrays (at least 2 C + 1) and
    ``stamp_box`` (one int64 that only grows).  Returns (status, word ids of the
    best path in time order, the hash size to carry into the connection's next
    search); on OUT_OF_TOKENS / OUT_OF_QUEUE nothing is decoded and the caller
    runs it again with more scratch.
    """
    cap = t_tot.size
    qcap = queue.size
    stamp = stamp_box[0]
    no_words = np.zeros(0, dtype=np.int32)

    # InitDecoding: the start token, then the epsilon closure within ``beam``.
    t_tot[0] = 0.0
    t_state[0] = start
    t_bp[0] = -1
    t_bias[0] = 0
    t_il[0] = 0
    t_ol[0] = 0
    t_lcost[0] = 0.0
    state_tok[start] = 0
    n_tok = 1
    lo = 0  # the current frame's tokens are lo:n_tok
    frame_hash = hash_size  # the hash size the current frame's tokens were inserted with
    cutoff = np.float32(beam)
    status = DONE

    num_frames = loglikes.shape[0]
    for frame in range(-1, num_frames):
        if frame >= 0:
            # ---- ProcessEmitting(frame): tokens lo:hi → a new frame ----
            hi = n_tok
            count = hi - lo
            stamp += 1
            _hash_order(t_state, lo, count, frame_hash, bucket_stamp, bucket_rank, stamp, ranks, starts, order)
            # The frame's tokens leave the state map (a new frame is built in it).
            for i in range(lo, hi):
                state_tok[t_state[i]] = -1
            # GetCutoff.
            best = -1
            best_tot = INF
            for j in range(count):
                w = t_tot[order[j]]
                if w < best_tot:
                    best_tot = w
                    best = order[j]
            beam_cutoff = np.float32(best_tot + np.float32(beam))
            min_cut = INF
            if count > min_active:
                for i in range(count):
                    select_buf[i] = t_tot[lo + i]
                min_cut = _select(select_buf, count, min_active)
            if min_cut > beam_cutoff:
                cur_cutoff = min_cut
                adaptive = np.float32(np.float32(min_cut - best_tot) + np.float32(beam_delta))
            else:
                cur_cutoff = beam_cutoff
                adaptive = np.float32(beam)
            # PossiblyResizeHash: the new frame's tokens go into a hash this big.
            new_size = np.int64(np.float32(count) * np.float32(hash_ratio))
            if new_size > hash_size:
                hash_size = new_size
            frame_hash = hash_size
            lo = hi
            # The pre-pass over the best token's arcs sets the first cutoff of the new frame.
            next_cutoff = INF
            cost_offset = np.float32(0.0)
            if best >= 0:
                cost_offset = np.float32(-t_tot[best])
                s = t_state[best]
                for a in range(arc_begin[s], eps_begin[s]):
                    nw = np.float32(np.float32(np.float32(weights[a] + cost_offset) - loglikes[frame, ilabels[a] - 1])
                                    + t_tot[best])
                    if np.float32(nw + adaptive) < next_cutoff:
                        next_cutoff = np.float32(nw + adaptive)
            for j in range(count):
                src = order[j]
                src_tot = t_tot[src]
                if not (src_tot <= cur_cutoff):
                    continue
                s = t_state[src]
                for a in range(arc_begin[s], eps_begin[s]):
                    il = ilabels[a]
                    ac = np.float32(cost_offset - loglikes[frame, il - 1])
                    g = weights[a]
                    tot = np.float32(np.float32(src_tot + ac) + g)
                    nb = 0
                    if use_bias:
                        k = il - 1
                        src_bias = t_bias[src]
                        if k == 0:
                            nb = src_bias
                        else:
                            if k > vocab_size:
                                sc = np.float32(0.0)
                                nb = 0
                            elif src_bias == 0 or not inner_label[k]:
                                # No node on the failure chain but the root has a child on k: the
                                # walk's backoffs are the chain's sum, then the root's step (inlined
                                # by hand: a call here costs more than the rest of the search).  The
                                # scores are integers (--fst-inc-wts, the weights), so exact in any order.
                                sc = chain_backoff[src_bias]
                                nb = root_child[k]
                                if nb < 0:
                                    nb = 0
                                else:
                                    sc = np.float32(sc + increment)
                                    if is_final[nb]:
                                        sc = np.float32(sc + final[nb])
                            else:
                                sc, nb = bias_score(child_begin, child_label, child_node, root_child, fail, backoff,
                                                    final, is_final, chain_backoff, inner_label, increment,
                                                    vocab_size, src_bias, k)
                            g = np.float32(g - sc)
                            tot = np.float32(tot - sc)
                    if tot >= next_cutoff:
                        continue
                    if np.float32(tot + adaptive) < next_cutoff:
                        next_cutoff = np.float32(tot + adaptive)
                    lcost = np.float32(g + ac)
                    ns = nextstates[a]
                    dst = state_tok[ns]
                    if dst < 0:
                        if n_tok == cap:
                            status = OUT_OF_TOKENS
                            break
                        dst = n_tok
                        n_tok += 1
                        state_tok[ns] = dst
                        t_tot[dst] = tot
                        t_state[dst] = ns
                        t_bp[dst] = src
                        t_bias[dst] = nb
                        t_il[dst] = il
                        t_ol[dst] = olabels[a]
                        t_lcost[dst] = lcost
                    elif t_tot[dst] > tot:
                        t_tot[dst] = tot
                        t_bp[dst] = src
                        t_bias[dst] = nb
                        t_il[dst] = il
                        t_ol[dst] = olabels[a]
                        t_lcost[dst] = lcost
                    elif t_bp[dst] == src and not (t_lcost[dst] < lcost):
                        # Traceback takes the cheapest of the backpointer's links, the newest on ties.
                        t_il[dst] = il
                        t_ol[dst] = olabels[a]
                        t_lcost[dst] = lcost
                if status != DONE:
                    break
            if status != DONE:
                break
            cutoff = next_cutoff
        # ---- ProcessNonemitting(cutoff) over the frame lo:n_tok ----
        hi = n_tok
        count = hi - lo
        stamp += 1
        _hash_order(t_state, lo, count, frame_hash, bucket_stamp, bucket_rank, stamp, ranks, starts, order)
        # The LIFO queue, seeded in HashList order with the tokens whose state has input epsilons.
        qn = 0
        for j in range(count):
            s = t_state[order[j]]
            if eps_begin[s] < arc_begin[s + 1]:
                queue[qn] = order[j]  # qn <= count <= cap <= qcap
                qn += 1
        while qn > 0:
            qn -= 1
            src = queue[qn]
            cur_cost = t_tot[src]
            if cur_cost >= cutoff:
                continue
            s = t_state[src]
            for a in range(eps_begin[s], arc_begin[s + 1]):
                ns = nextstates[a]
                g = weights[a]
                tot = np.float32(cur_cost + g)
                if not (tot < cutoff):
                    continue
                changed = False
                dst = state_tok[ns]
                if dst < 0:
                    if n_tok == cap:
                        status = OUT_OF_TOKENS
                        break
                    dst = n_tok
                    n_tok += 1
                    state_tok[ns] = dst
                    t_state[dst] = ns
                    changed = True
                elif t_tot[dst] > tot:
                    changed = True
                elif t_bp[dst] == src and not (t_lcost[dst] < g):
                    t_il[dst] = 0
                    t_ol[dst] = olabels[a]
                    t_lcost[dst] = g
                if changed:
                    t_tot[dst] = tot
                    t_bp[dst] = src
                    t_il[dst] = 0
                    t_ol[dst] = olabels[a]
                    t_lcost[dst] = g
                    t_bias[dst] = t_bias[src]
                    if eps_begin[ns] < arc_begin[ns + 1]:
                        if qn == qcap:
                            status = OUT_OF_QUEUE
                            break
                        queue[qn] = dst
                        qn += 1
            if status != DONE:
                break
        if status != DONE:
            break

    stamp_box[0] = stamp
    # The state map is the caller's scratch: leave it clean.
    for i in range(lo, n_tok):
        state_tok[t_state[i]] = -1
    if status != DONE:
        return status, no_words, hash_size

    # GetBestPath(use_final_probs): newest token first, strict <; finals only if any token is final.
    any_final = False
    for i in range(lo, n_tok):
        if finals[t_state[i]] != INF:
            any_final = True
            break
    best = -1
    best_cost = INF
    for i in range(n_tok - 1, lo - 1, -1):
        cost = t_tot[i]
        if any_final:
            f = finals[t_state[i]]
            cost = np.float32(cost + f) if f != INF else INF
        if cost < best_cost:
            best_cost = cost
            best = i
    if best < 0:
        best = n_tok - 1
    n_words = 0
    i = best
    while t_bp[i] >= 0:
        if t_ol[i] != 0:
            n_words += 1
        i = t_bp[i]
    words = np.empty(n_words, dtype=np.int32)
    i = best
    w = n_words
    while t_bp[i] >= 0:
        if t_ol[i] != 0:
            w -= 1
            words[w] = t_ol[i]
        i = t_bp[i]
    return status, words, hash_size
