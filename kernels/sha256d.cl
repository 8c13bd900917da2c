/*
 * SHA-256d nonce scan, VW nonces per work item (VW = 1, 2, 4, 8 or 16).
 *
 * VW is set at build time from the device's preferred int vector width: GPUs
 * want 1 (their SIMD runs across work items), CPU runtimes such as PoCL want
 * a full register (16 lanes with AVX-512) because they vectorise explicit
 * vector types reliably but not the loop over work items.
 *
 * The host does everything that does not depend on the nonce once per work
 * unit: the midstate of header bytes 0..63, rounds 0..2 of the second block
 * (the nonce is message word 3), the part of round 3 without the nonce, and
 * the schedule words 16..19 up to their nonce terms. The second hash stops
 * after round 60: the digest's last state word h is already fixed there, and
 * its byte-swapped value is the top 32 bits of the hash read as a
 * little-endian number, which is all the candidate test needs.
 *
 * pre[0..7]   midstate
 * pre[8..15]  state a..h after rounds 0..2 of the second block
 * pre[16]     round 3's T1 without W3: h + S1(e) + Ch(e,f,g) + K[3]
 * pre[17..19] W0..W2 (merkle tail, ntime, nbits as big-endian words)
 * pre[20..21] W16, W17
 * pre[22]     W18 without s0(W3)
 * pre[23]     W19 without W3
 *
 * out[0] counts candidates (atomically); out[1..cap] holds the first cap of
 * them in no particular order. A count above cap tells the host to rescan.
 */

#ifndef VW
#define VW 1
#endif
#if VW == 1
typedef uint uintV;
#define LANES ((uint)0)
#elif VW == 2
typedef uint2 uintV;
#define LANES ((uint2)(0, 1))
#elif VW == 4
typedef uint4 uintV;
#define LANES ((uint4)(0, 1, 2, 3))
#elif VW == 8
typedef uint8 uintV;
#define LANES ((uint8)(0, 1, 2, 3, 4, 5, 6, 7))
#elif VW == 16
typedef uint16 uintV;
#define LANES ((uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15))
#else
#error "VW must be 1, 2, 4, 8 or 16"
#endif

/* rotate() turns left; SHA-256 is written with right rotations */
#define ROTR(x, n) rotate((uintV)(x), (uintV)(32 - (n)))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) bitselect((z), (y), (x))
#define MAJ(x, y, z) bitselect((x), (y), (z) ^ (x))
#define BSWAP32(x) (rotate((x) & 0x00ff00ffU, (uintV)24) | rotate((x) & 0xff00ff00U, (uintV)8))

/* One round with the working variables renamed instead of shifted: the caller
 * rotates the argument list, so round t+1 is RND(h, a, b, ...) after RND(a, b, ...).
 * The new a lands in h's variable and the new e in d's. */
#define RND(a, b, c, d, e, f, g, h, kw)                              \
    {                                                                \
        const uintV t_ = (h) + BSIG1(e) + CH((e), (f), (g)) + (kw); \
        (d) += t_;                                                   \
        (h) = t_ + BSIG0(a) + MAJ((a), (b), (c));                    \
    }

/* message schedule in a 16-word window: w[t % 16] turns from W[t-16] into W[t] */
#define SCHED(wt, wt2, wt7, wt15) (wt) += SSIG1(wt2) + (wt7) + SSIG0(wt15)

/* Rounds written out in full (not as loops over arrays) so that every compiler
 * keeps the words in registers and folds the zero padding words away. */
__kernel void sha256d_scan(__constant const uint *pre, const uint base, const uint count, const uint target_top,
                           __global uint *out, const uint cap)
{
    const uint first = (uint)get_global_id(0) * VW; /* offset of lane 0 in the launch */
    if (first >= count)
        return;
    const uintV nonce = base + first + LANES;
    /* first hash, second block: W0..W2 from the header tail, W3 the nonce, then padding (640 bits) */
    uintV w0 = pre[17], w1 = pre[18], w2 = pre[19], w3 = BSWAP32(nonce);
    uintV w4 = 0x80000000U, w5 = 0, w6 = 0, w7 = 0, w8 = 0, w9 = 0, w10 = 0, w11 = 0;
    uintV w12 = 0, w13 = 0, w14 = 0, w15 = 640U;
    /* the state after rounds 0..2, named as the round macros have rotated them */
    uintV f = pre[8], g = pre[9], h = pre[10], a = pre[11], b = pre[12], c = pre[13], d = pre[14], e = pre[15];
    /* round 3: pre[16] holds all of T1 but W3 */
    const uintV t1 = pre[16] + w3;
    a += t1;
    e = t1 + BSIG0(f) + MAJ(f, g, h);
    RND(e, f, g, h, a, b, c, d, 0x3956c25bU + w4);
    RND(d, e, f, g, h, a, b, c, 0x59f111f1U + w5);
    RND(c, d, e, f, g, h, a, b, 0x923f82a4U + w6);
    RND(b, c, d, e, f, g, h, a, 0xab1c5ed5U + w7);
    RND(a, b, c, d, e, f, g, h, 0xd807aa98U + w8);
    RND(h, a, b, c, d, e, f, g, 0x12835b01U + w9);
    RND(g, h, a, b, c, d, e, f, 0x243185beU + w10);
    RND(f, g, h, a, b, c, d, e, 0x550c7dc3U + w11);
    RND(e, f, g, h, a, b, c, d, 0x72be5d74U + w12);
    RND(d, e, f, g, h, a, b, c, 0x80deb1feU + w13);
    RND(c, d, e, f, g, h, a, b, 0x9bdc06a7U + w14);
    RND(b, c, d, e, f, g, h, a, 0xc19bf174U + w15);
    w0 = pre[20];
    RND(a, b, c, d, e, f, g, h, 0xe49b69c1U + w0);
    w1 = pre[21];
    RND(h, a, b, c, d, e, f, g, 0xefbe4786U + w1);
    w2 = pre[22] + SSIG0(w3);
    RND(g, h, a, b, c, d, e, f, 0x0fc19dc6U + w2);
    w3 = pre[23] + w3;
    RND(f, g, h, a, b, c, d, e, 0x240ca1ccU + w3);
    SCHED(w4, w2, w13, w5);
    RND(e, f, g, h, a, b, c, d, 0x2de92c6fU + w4);
    SCHED(w5, w3, w14, w6);
    RND(d, e, f, g, h, a, b, c, 0x4a7484aaU + w5);
    SCHED(w6, w4, w15, w7);
    RND(c, d, e, f, g, h, a, b, 0x5cb0a9dcU + w6);
    SCHED(w7, w5, w0, w8);
    RND(b, c, d, e, f, g, h, a, 0x76f988daU + w7);
    SCHED(w8, w6, w1, w9);
    RND(a, b, c, d, e, f, g, h, 0x983e5152U + w8);
    SCHED(w9, w7, w2, w10);
    RND(h, a, b, c, d, e, f, g, 0xa831c66dU + w9);
    SCHED(w10, w8, w3, w11);
    RND(g, h, a, b, c, d, e, f, 0xb00327c8U + w10);
    SCHED(w11, w9, w4, w12);
    RND(f, g, h, a, b, c, d, e, 0xbf597fc7U + w11);
    SCHED(w12, w10, w5, w13);
    RND(e, f, g, h, a, b, c, d, 0xc6e00bf3U + w12);
    SCHED(w13, w11, w6, w14);
    RND(d, e, f, g, h, a, b, c, 0xd5a79147U + w13);
    SCHED(w14, w12, w7, w15);
    RND(c, d, e, f, g, h, a, b, 0x06ca6351U + w14);
    SCHED(w15, w13, w8, w0);
    RND(b, c, d, e, f, g, h, a, 0x14292967U + w15);
    SCHED(w0, w14, w9, w1);
    RND(a, b, c, d, e, f, g, h, 0x27b70a85U + w0);
    SCHED(w1, w15, w10, w2);
    RND(h, a, b, c, d, e, f, g, 0x2e1b2138U + w1);
    SCHED(w2, w0, w11, w3);
    RND(g, h, a, b, c, d, e, f, 0x4d2c6dfcU + w2);
    SCHED(w3, w1, w12, w4);
    RND(f, g, h, a, b, c, d, e, 0x53380d13U + w3);
    SCHED(w4, w2, w13, w5);
    RND(e, f, g, h, a, b, c, d, 0x650a7354U + w4);
    SCHED(w5, w3, w14, w6);
    RND(d, e, f, g, h, a, b, c, 0x766a0abbU + w5);
    SCHED(w6, w4, w15, w7);
    RND(c, d, e, f, g, h, a, b, 0x81c2c92eU + w6);
    SCHED(w7, w5, w0, w8);
    RND(b, c, d, e, f, g, h, a, 0x92722c85U + w7);
    SCHED(w8, w6, w1, w9);
    RND(a, b, c, d, e, f, g, h, 0xa2bfe8a1U + w8);
    SCHED(w9, w7, w2, w10);
    RND(h, a, b, c, d, e, f, g, 0xa81a664bU + w9);
    SCHED(w10, w8, w3, w11);
    RND(g, h, a, b, c, d, e, f, 0xc24b8b70U + w10);
    SCHED(w11, w9, w4, w12);
    RND(f, g, h, a, b, c, d, e, 0xc76c51a3U + w11);
    SCHED(w12, w10, w5, w13);
    RND(e, f, g, h, a, b, c, d, 0xd192e819U + w12);
    SCHED(w13, w11, w6, w14);
    RND(d, e, f, g, h, a, b, c, 0xd6990624U + w13);
    SCHED(w14, w12, w7, w15);
    RND(c, d, e, f, g, h, a, b, 0xf40e3585U + w14);
    SCHED(w15, w13, w8, w0);
    RND(b, c, d, e, f, g, h, a, 0x106aa070U + w15);
    SCHED(w0, w14, w9, w1);
    RND(a, b, c, d, e, f, g, h, 0x19a4c116U + w0);
    SCHED(w1, w15, w10, w2);
    RND(h, a, b, c, d, e, f, g, 0x1e376c08U + w1);
    SCHED(w2, w0, w11, w3);
    RND(g, h, a, b, c, d, e, f, 0x2748774cU + w2);
    SCHED(w3, w1, w12, w4);
    RND(f, g, h, a, b, c, d, e, 0x34b0bcb5U + w3);
    SCHED(w4, w2, w13, w5);
    RND(e, f, g, h, a, b, c, d, 0x391c0cb3U + w4);
    SCHED(w5, w3, w14, w6);
    RND(d, e, f, g, h, a, b, c, 0x4ed8aa4aU + w5);
    SCHED(w6, w4, w15, w7);
    RND(c, d, e, f, g, h, a, b, 0x5b9cca4fU + w6);
    SCHED(w7, w5, w0, w8);
    RND(b, c, d, e, f, g, h, a, 0x682e6ff3U + w7);
    SCHED(w8, w6, w1, w9);
    RND(a, b, c, d, e, f, g, h, 0x748f82eeU + w8);
    SCHED(w9, w7, w2, w10);
    RND(h, a, b, c, d, e, f, g, 0x78a5636fU + w9);
    SCHED(w10, w8, w3, w11);
    RND(g, h, a, b, c, d, e, f, 0x84c87814U + w10);
    SCHED(w11, w9, w4, w12);
    RND(f, g, h, a, b, c, d, e, 0x8cc70208U + w11);
    SCHED(w12, w10, w5, w13);
    RND(e, f, g, h, a, b, c, d, 0x90befffaU + w12);
    SCHED(w13, w11, w6, w14);
    RND(d, e, f, g, h, a, b, c, 0xa4506cebU + w13);
    SCHED(w14, w12, w7, w15);
    RND(c, d, e, f, g, h, a, b, 0xbef9a3f7U + w14);
    SCHED(w15, w13, w8, w0);
    RND(b, c, d, e, f, g, h, a, 0xc67178f2U + w15);

    /* second hash: the 32-byte digest plus padding (256 bits) */
    w0 = pre[0] + a;
    w1 = pre[1] + b;
    w2 = pre[2] + c;
    w3 = pre[3] + d;
    w4 = pre[4] + e;
    w5 = pre[5] + f;
    w6 = pre[6] + g;
    w7 = pre[7] + h;
    w8 = 0x80000000U;
    w9 = 0;
    w10 = 0;
    w11 = 0;
    w12 = 0;
    w13 = 0;
    w14 = 0;
    w15 = 256U;
    a = 0x6a09e667U;
    b = 0xbb67ae85U;
    c = 0x3c6ef372U;
    d = 0xa54ff53aU;
    e = 0x510e527fU;
    f = 0x9b05688cU;
    g = 0x1f83d9abU;
    h = 0x5be0cd19U;
    RND(a, b, c, d, e, f, g, h, 0x428a2f98U + w0);
    RND(h, a, b, c, d, e, f, g, 0x71374491U + w1);
    RND(g, h, a, b, c, d, e, f, 0xb5c0fbcfU + w2);
    RND(f, g, h, a, b, c, d, e, 0xe9b5dba5U + w3);
    RND(e, f, g, h, a, b, c, d, 0x3956c25bU + w4);
    RND(d, e, f, g, h, a, b, c, 0x59f111f1U + w5);
    RND(c, d, e, f, g, h, a, b, 0x923f82a4U + w6);
    RND(b, c, d, e, f, g, h, a, 0xab1c5ed5U + w7);
    RND(a, b, c, d, e, f, g, h, 0xd807aa98U + w8);
    RND(h, a, b, c, d, e, f, g, 0x12835b01U + w9);
    RND(g, h, a, b, c, d, e, f, 0x243185beU + w10);
    RND(f, g, h, a, b, c, d, e, 0x550c7dc3U + w11);
    RND(e, f, g, h, a, b, c, d, 0x72be5d74U + w12);
    RND(d, e, f, g, h, a, b, c, 0x80deb1feU + w13);
    RND(c, d, e, f, g, h, a, b, 0x9bdc06a7U + w14);
    RND(b, c, d, e, f, g, h, a, 0xc19bf174U + w15);
    SCHED(w0, w14, w9, w1);
    RND(a, b, c, d, e, f, g, h, 0xe49b69c1U + w0);
    SCHED(w1, w15, w10, w2);
    RND(h, a, b, c, d, e, f, g, 0xefbe4786U + w1);
    SCHED(w2, w0, w11, w3);
    RND(g, h, a, b, c, d, e, f, 0x0fc19dc6U + w2);
    SCHED(w3, w1, w12, w4);
    RND(f, g, h, a, b, c, d, e, 0x240ca1ccU + w3);
    SCHED(w4, w2, w13, w5);
    RND(e, f, g, h, a, b, c, d, 0x2de92c6fU + w4);
    SCHED(w5, w3, w14, w6);
    RND(d, e, f, g, h, a, b, c, 0x4a7484aaU + w5);
    SCHED(w6, w4, w15, w7);
    RND(c, d, e, f, g, h, a, b, 0x5cb0a9dcU + w6);
    SCHED(w7, w5, w0, w8);
    RND(b, c, d, e, f, g, h, a, 0x76f988daU + w7);
    SCHED(w8, w6, w1, w9);
    RND(a, b, c, d, e, f, g, h, 0x983e5152U + w8);
    SCHED(w9, w7, w2, w10);
    RND(h, a, b, c, d, e, f, g, 0xa831c66dU + w9);
    SCHED(w10, w8, w3, w11);
    RND(g, h, a, b, c, d, e, f, 0xb00327c8U + w10);
    SCHED(w11, w9, w4, w12);
    RND(f, g, h, a, b, c, d, e, 0xbf597fc7U + w11);
    SCHED(w12, w10, w5, w13);
    RND(e, f, g, h, a, b, c, d, 0xc6e00bf3U + w12);
    SCHED(w13, w11, w6, w14);
    RND(d, e, f, g, h, a, b, c, 0xd5a79147U + w13);
    SCHED(w14, w12, w7, w15);
    RND(c, d, e, f, g, h, a, b, 0x06ca6351U + w14);
    SCHED(w15, w13, w8, w0);
    RND(b, c, d, e, f, g, h, a, 0x14292967U + w15);
    SCHED(w0, w14, w9, w1);
    RND(a, b, c, d, e, f, g, h, 0x27b70a85U + w0);
    SCHED(w1, w15, w10, w2);
    RND(h, a, b, c, d, e, f, g, 0x2e1b2138U + w1);
    SCHED(w2, w0, w11, w3);
    RND(g, h, a, b, c, d, e, f, 0x4d2c6dfcU + w2);
    SCHED(w3, w1, w12, w4);
    RND(f, g, h, a, b, c, d, e, 0x53380d13U + w3);
    SCHED(w4, w2, w13, w5);
    RND(e, f, g, h, a, b, c, d, 0x650a7354U + w4);
    SCHED(w5, w3, w14, w6);
    RND(d, e, f, g, h, a, b, c, 0x766a0abbU + w5);
    SCHED(w6, w4, w15, w7);
    RND(c, d, e, f, g, h, a, b, 0x81c2c92eU + w6);
    SCHED(w7, w5, w0, w8);
    RND(b, c, d, e, f, g, h, a, 0x92722c85U + w7);
    SCHED(w8, w6, w1, w9);
    RND(a, b, c, d, e, f, g, h, 0xa2bfe8a1U + w8);
    SCHED(w9, w7, w2, w10);
    RND(h, a, b, c, d, e, f, g, 0xa81a664bU + w9);
    SCHED(w10, w8, w3, w11);
    RND(g, h, a, b, c, d, e, f, 0xc24b8b70U + w10);
    SCHED(w11, w9, w4, w12);
    RND(f, g, h, a, b, c, d, e, 0xc76c51a3U + w11);
    SCHED(w12, w10, w5, w13);
    RND(e, f, g, h, a, b, c, d, 0xd192e819U + w12);
    SCHED(w13, w11, w6, w14);
    RND(d, e, f, g, h, a, b, c, 0xd6990624U + w13);
    SCHED(w14, w12, w7, w15);
    RND(c, d, e, f, g, h, a, b, 0xf40e3585U + w14);
    SCHED(w15, w13, w8, w0);
    RND(b, c, d, e, f, g, h, a, 0x106aa070U + w15);
    SCHED(w0, w14, w9, w1);
    RND(a, b, c, d, e, f, g, h, 0x19a4c116U + w0);
    SCHED(w1, w15, w10, w2);
    RND(h, a, b, c, d, e, f, g, 0x1e376c08U + w1);
    SCHED(w2, w0, w11, w3);
    RND(g, h, a, b, c, d, e, f, 0x2748774cU + w2);
    SCHED(w3, w1, w12, w4);
    RND(f, g, h, a, b, c, d, e, 0x34b0bcb5U + w3);
    SCHED(w4, w2, w13, w5);
    RND(e, f, g, h, a, b, c, d, 0x391c0cb3U + w4);
    SCHED(w5, w3, w14, w6);
    RND(d, e, f, g, h, a, b, c, 0x4ed8aa4aU + w5);
    SCHED(w6, w4, w15, w7);
    RND(c, d, e, f, g, h, a, b, 0x5b9cca4fU + w6);
    SCHED(w7, w5, w0, w8);
    RND(b, c, d, e, f, g, h, a, 0x682e6ff3U + w7);
    SCHED(w8, w6, w1, w9);
    RND(a, b, c, d, e, f, g, h, 0x748f82eeU + w8);
    SCHED(w9, w7, w2, w10);
    RND(h, a, b, c, d, e, f, g, 0x78a5636fU + w9);
    SCHED(w10, w8, w3, w11);
    RND(g, h, a, b, c, d, e, f, 0x84c87814U + w10);
    SCHED(w11, w9, w4, w12);
    RND(f, g, h, a, b, c, d, e, 0x8cc70208U + w11);
    SCHED(w12, w10, w5, w13);
    /* round 60's new e is the final h: rounds 61..63 only shift it along */
    const uintV top = BSWAP32(0x5be0cd19U + h + d + BSIG1(a) + CH(a, b, c) + 0x90befffaU + w12);
#if VW == 1
    if (top <= target_top) {
        const uint slot = atomic_inc(&out[0]);
        if (slot < cap)
            out[1 + slot] = nonce;
    }
#else
    if (any(top <= target_top)) {
        union {
            uintV v;
            uint s[VW];
        } tops, nonces;
        tops.v = top;
        nonces.v = nonce;
        for (uint i = 0; i < VW; i++) {
            if (tops.s[i] <= target_top && first + i < count) {
                const uint slot = atomic_inc(&out[0]);
                if (slot < cap)
                    out[1 + slot] = nonces.s[i];
            }
        }
    }
#endif
}
