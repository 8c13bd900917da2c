/*
 * SHA-256d nonce scan, one nonce per work item.
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

__constant uint K[64] = {
    0x428a2f98U, 0x71374491U, 0xb5c0fbcfU, 0xe9b5dba5U, 0x3956c25bU, 0x59f111f1U, 0x923f82a4U, 0xab1c5ed5U,
    0xd807aa98U, 0x12835b01U, 0x243185beU, 0x550c7dc3U, 0x72be5d74U, 0x80deb1feU, 0x9bdc06a7U, 0xc19bf174U,
    0xe49b69c1U, 0xefbe4786U, 0x0fc19dc6U, 0x240ca1ccU, 0x2de92c6fU, 0x4a7484aaU, 0x5cb0a9dcU, 0x76f988daU,
    0x983e5152U, 0xa831c66dU, 0xb00327c8U, 0xbf597fc7U, 0xc6e00bf3U, 0xd5a79147U, 0x06ca6351U, 0x14292967U,
    0x27b70a85U, 0x2e1b2138U, 0x4d2c6dfcU, 0x53380d13U, 0x650a7354U, 0x766a0abbU, 0x81c2c92eU, 0x92722c85U,
    0xa2bfe8a1U, 0xa81a664bU, 0xc24b8b70U, 0xc76c51a3U, 0xd192e819U, 0xd6990624U, 0xf40e3585U, 0x106aa070U,
    0x19a4c116U, 0x1e376c08U, 0x2748774cU, 0x34b0bcb5U, 0x391c0cb3U, 0x4ed8aa4aU, 0x5b9cca4fU, 0x682e6ff3U,
    0x748f82eeU, 0x78a5636fU, 0x84c87814U, 0x8cc70208U, 0x90befffaU, 0xa4506cebU, 0xbef9a3f7U, 0xc67178f2U,
};

/* rotate() turns left; SHA-256 is written with right rotations */
#define ROTR(x, n) rotate((uint)(x), (uint)(32 - (n)))
#define BSIG0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define BSIG1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define SSIG0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define SSIG1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) bitselect((z), (y), (x))
#define MAJ(x, y, z) bitselect((x), (y), (z) ^ (x))
#define BSWAP32(x) (rotate((x) & 0x00ff00ffU, 24U) | rotate((x) & 0xff00ff00U, 8U))

/* one round with the shift of the eight working variables written out */
#define ROUND(kw)                                   \
    {                                               \
        uint t1 = h + BSIG1(e) + CH(e, f, g) + (kw); \
        uint t2 = BSIG0(a) + MAJ(a, b, c);          \
        h = g;                                      \
        g = f;                                      \
        f = e;                                      \
        e = d + t1;                                 \
        d = c;                                      \
        c = b;                                      \
        b = a;                                      \
        a = t1 + t2;                                \
    }

__kernel void sha256d_scan(__constant const uint *pre, const uint base, const uint count, const uint target_top,
                           __global uint *out, const uint cap)
{
    const uint gid = (uint)get_global_id(0);
    if (gid >= count)
        return;
    const uint nonce = base + gid;
    uint w[64];
    uint a, b, c, d, e, f, g, h;

    /* first hash, second block: header bytes 64..79 plus padding (640 bits) */
    w[0] = pre[17];
    w[1] = pre[18];
    w[2] = pre[19];
    w[3] = BSWAP32(nonce);
    w[4] = 0x80000000U;
#pragma unroll
    for (int t = 5; t < 15; t++)
        w[t] = 0U;
    w[15] = 640U;
    w[16] = pre[20];
    w[17] = pre[21];
    w[18] = pre[22] + SSIG0(w[3]);
    w[19] = pre[23] + w[3];
#pragma unroll
    for (int t = 20; t < 64; t++)
        w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];

    a = pre[8];
    b = pre[9];
    c = pre[10];
    d = pre[11];
    e = pre[12];
    f = pre[13];
    g = pre[14];
    h = pre[15];
    {
        uint t1 = pre[16] + w[3];
        uint t2 = BSIG0(a) + MAJ(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
#pragma unroll
    for (int t = 4; t < 64; t++)
        ROUND(K[t] + w[t]);

    /* second hash: the 32-byte digest plus padding (256 bits) */
    w[0] = pre[0] + a;
    w[1] = pre[1] + b;
    w[2] = pre[2] + c;
    w[3] = pre[3] + d;
    w[4] = pre[4] + e;
    w[5] = pre[5] + f;
    w[6] = pre[6] + g;
    w[7] = pre[7] + h;
    w[8] = 0x80000000U;
#pragma unroll
    for (int t = 9; t < 15; t++)
        w[t] = 0U;
    w[15] = 256U;
#pragma unroll
    for (int t = 16; t < 61; t++)
        w[t] = SSIG1(w[t - 2]) + w[t - 7] + SSIG0(w[t - 15]) + w[t - 16];

    a = 0x6a09e667U;
    b = 0xbb67ae85U;
    c = 0x3c6ef372U;
    d = 0xa54ff53aU;
    e = 0x510e527fU;
    f = 0x9b05688cU;
    g = 0x1f83d9abU;
    h = 0x5be0cd19U;
#pragma unroll
    for (int t = 0; t < 60; t++)
        ROUND(K[t] + w[t]);

    /* round 60's new e is the final h (rounds 61..63 only shift it along) */
    const uint h7 = 0x5be0cd19U + d + h + BSIG1(e) + CH(e, f, g) + K[60] + w[60];
    if (BSWAP32(h7) <= target_top) {
        const uint slot = atomic_inc(&out[0]);
        if (slot < cap)
            out[1 + slot] = nonce;
    }
}
