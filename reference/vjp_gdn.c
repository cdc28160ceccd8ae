/* SPDX-License-Identifier: MIT */
/*
 * Backward passes of the gated delta rule: the recurrent form (token by token, the clear one)
 * and the chunked WY / UT-transform form (the one engines implement). Each differentiates its
 * own forward, so the two agreeing is a check of both.
 *
 * Forward, per value head h (key head kh = h / (Hv/Hk)), token t:
 *   S' = exp(g_t) S;  kv = S'^T k_t;  delta = beta_t (v_t - kv);  S = S' + k_t delta^T;
 *   o_t = S^T q_t
 *
 * Shape legend: n = tokens, Hk/Hv = key/value heads, Dk/Dv = their dims, L = tokens in one
 * chunk, c = chunk length. Reductions accumulate in double.
 */
#include <assert.h>
#include <string.h>

#include "qref_internal.h"
#include "qref_vjp_internal.h"

static const qref_vjp_faults no_faults;

/* ---------------------------------------------------------------- recurrent form
 *
 * Forward once, keeping the state before every token; then backward from the last token:
 *   dS += q dO^T                      (o = S^T q),        dq += S dO
 *   dk += dS delta, ddelta = dS^T k   (S = S' + k delta^T)
 *   dbeta = ddelta . (v - kv), dv = beta ddelta, dkv = -beta ddelta
 *   dS' += k dkv^T, dk += S' dkv      (kv = S'^T k)
 *   dg = <S', dS'>, dS_prev = exp(g) dS'
 *
 * Scratch: Sp (n, Dk, Dv) states before each token | S1, S2, dS (Dk, Dv) | vectors (4, Dv). */

size_t qref_vjp_gdn_recurrent_scratch(int n, int Dk, int Dv)
{
    return ((size_t)n + 3) * (size_t)Dk * Dv + 4 * (size_t)Dv;
}

void qref__vjp_gdn_recurrent(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                             qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                             const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                             const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                             int Dv, qref_real *scratch, const qref_vjp_faults *f)
{
    assert(Hk > 0 && Hv % Hk == 0 && n >= 0);
    f = f ? f : &no_faults;
    const int rep = Hv / Hk;
    const size_t SS = (size_t)Dk * Dv;
    qref_real *Sp = scratch;                    /* (n, Dk, Dv) */
    qref_real *S1 = Sp + (size_t)n * SS;        /* (Dk, Dv) decayed state S' */
    qref_real *S2 = S1 + SS;                    /* (Dk, Dv) state after the token */
    qref_real *dS = S2 + SS;                    /* (Dk, Dv) */
    qref_real *kv = dS + SS;                    /* (Dv) */
    qref_real *dl = kv + Dv;                    /* (Dv) delta */
    qref_real *ddl = dl + Dv;                   /* (Dv) d delta */
    qref_real *dkv = ddl + Dv;                  /* (Dv) */
    memset(dq, 0, (size_t)n * Hk * Dk * sizeof *dq);
    memset(dk, 0, (size_t)n * Hk * Dk * sizeof *dk);

    for (int h = 0; h < Hv; h++) {
        const int kh = h / rep;
        /* forward, keeping the state before each token */
        memcpy(S2, state0 + (size_t)h * SS, SS * sizeof *S2);
        for (int t = 0; t < n; t++) {
            const qref_real *kt = k + ((size_t)t * Hk + kh) * Dk;   /* (Dk) */
            const qref_real *vt = v + ((size_t)t * Hv + h) * Dv;    /* (Dv) */
            const double decay = exp((double)g[(size_t)t * Hv + h]), bt = beta[(size_t)t * Hv + h];
            memcpy(Sp + (size_t)t * SS, S2, SS * sizeof *S2);
            for (int j = 0; j < Dv; j++) {
                double a = 0;
                for (int i = 0; i < Dk; i++)
                    a += (double)(qref_real)(S2[(size_t)i * Dv + j] * decay) * kt[i];
                dl[j] = (qref_real)(bt * ((double)vt[j] - a));
            }
            for (int i = 0; i < Dk; i++)
                for (int j = 0; j < Dv; j++) {
                    qref_real s1 = (qref_real)(S2[(size_t)i * Dv + j] * decay);
                    S2[(size_t)i * Dv + j] = (qref_real)(s1 + (double)kt[i] * dl[j]);
                }
        }
        /* backward */
        if (d_state)
            memcpy(dS, d_state + (size_t)h * SS, SS * sizeof *dS);
        else
            memset(dS, 0, SS * sizeof *dS);
        for (int t = n - 1; t >= 0; t--) {
            const qref_real *qt = q + ((size_t)t * Hk + kh) * Dk;   /* (Dk) */
            const qref_real *kt = k + ((size_t)t * Hk + kh) * Dk;   /* (Dk) */
            const qref_real *vt = v + ((size_t)t * Hv + h) * Dv;    /* (Dv) */
            const qref_real *gO = d_out ? d_out + ((size_t)t * Hv + h) * Dv : NULL;
            qref_real *dqt = dq + ((size_t)t * Hk + kh) * Dk;
            qref_real *dkt = dk + ((size_t)t * Hk + kh) * Dk;
            const double decay = exp((double)g[(size_t)t * Hv + h]), bt = beta[(size_t)t * Hv + h];
            const qref_real *Sprev = Sp + (size_t)t * SS;
            /* recompute S', kv, delta, S */
            for (size_t e = 0; e < SS; e++)
                S1[e] = (qref_real)(Sprev[e] * decay);
            for (int j = 0; j < Dv; j++) {
                double a = 0;
                for (int i = 0; i < Dk; i++)
                    a += (double)S1[(size_t)i * Dv + j] * kt[i];
                kv[j] = (qref_real)a;
                dl[j] = (qref_real)(bt * ((double)vt[j] - a));
            }
            for (int i = 0; i < Dk; i++)
                for (int j = 0; j < Dv; j++)
                    S2[(size_t)i * Dv + j] = (qref_real)(S1[(size_t)i * Dv + j] + (double)kt[i] * dl[j]);
            /* o = S^T q */
            if (gO) {
                for (int i = 0; i < Dk; i++) {
                    double a = 0;
                    for (int j = 0; j < Dv; j++) {
                        a += (double)S2[(size_t)i * Dv + j] * gO[j];
                        dS[(size_t)i * Dv + j] = (qref_real)(dS[(size_t)i * Dv + j] + (double)qt[i] * gO[j]);
                    }
                    dqt[i] = (qref_real)(dqt[i] + a);
                }
            }
            /* S = S' + k delta^T */
            for (int j = 0; j < Dv; j++) {
                double a = 0;
                for (int i = 0; i < Dk; i++)
                    a += (double)kt[i] * dS[(size_t)i * Dv + j];
                ddl[j] = (qref_real)a;
            }
            for (int i = 0; i < Dk; i++) {
                double a = 0;
                for (int j = 0; j < Dv; j++)
                    a += (double)dS[(size_t)i * Dv + j] * dl[j];
                dkt[i] = (qref_real)(dkt[i] + a);
            }
            /* delta = beta (v - kv) */
            double db = 0;
            for (int j = 0; j < Dv; j++) {
                db += (double)ddl[j] * ((double)vt[j] - kv[j]);
                dv[((size_t)t * Hv + h) * Dv + j] = (qref_real)(bt * ddl[j]);
                dkv[j] = (qref_real)(-bt * ddl[j]);
            }
            dbeta[(size_t)t * Hv + h] = (qref_real)db;
            /* kv = S'^T k */
            for (int i = 0; i < Dk; i++) {
                double a = 0;
                for (int j = 0; j < Dv; j++) {
                    a += (double)S1[(size_t)i * Dv + j] * dkv[j];
                    dS[(size_t)i * Dv + j] = (qref_real)(dS[(size_t)i * Dv + j] + (double)kt[i] * dkv[j]);
                }
                dkt[i] = (qref_real)(dkt[i] + a);
            }
            /* S' = exp(g) S_prev */
            double dgs = 0;
            for (size_t e = 0; e < SS; e++)
                dgs += (double)S1[e] * dS[e];
            dg[(size_t)t * Hv + h] = (qref_real)dgs;
            if (!f->gdn_no_decay)
                for (size_t e = 0; e < SS; e++)
                    dS[e] = (qref_real)(dS[e] * decay);
        }
        memcpy(dstate0 + (size_t)h * SS, dS, SS * sizeof *dS);
    }
}

void qref_vjp_gdn_recurrent(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                            qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                            const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                            const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                            int Dv, qref_real *scratch)
{
    qref__vjp_gdn_recurrent(dq, dk, dv, dg, dbeta, dstate0, d_out, d_state, q, k, v, g, beta, state0, n, Hk, Hv,
                            Dk, Dv, scratch, NULL);
}

/* ---------------------------------------------------------------- chunked form
 *
 * Within a chunk of L tokens with cumulative log-decay G_i = g_0 + ... + g_i, incoming state S:
 *   E_ij = exp(G_i - G_j) (j <= i);  A_ij = beta_i (k_i . k_j) E_ij (j < i);  P_ij = (q_i . k_j) E_ij
 *   (I + A) U = beta v;  (I + A) W = beta exp(G) k;  V' = U - W S
 *   o_i = exp(G_i) q_i^T S + sum_{j<=i} P_ij V'_j;  S_out = exp(G_L) S + sum_j exp(G_L - G_j) k_j V'_j^T
 * The backward of one chunk, from dS_out and dO:
 *   dV'_j = sum_{i>=j} P_ij dO_i + exp(G_L - G_j) dS_out^T k_j;  dP_ij = dO_i . V'_j
 *   dS = exp(G_L) dS_out + sum_i exp(G_i) q_i dO_i^T - W^T dV'
 *   dU = dV';  dW = -dV' S^T;  (I + A)^T dRv = dU, (I + A)^T dRk = dW (back substitution)
 *   dA_ij = -(dRv_i . U_j + dRk_i . W_j)  (j < i)
 * and the products above give dq, dk, dv, dbeta and dG (dg_t = sum_{i>=t} dG_i).
 * States at every chunk start come from a first forward sweep.
 *
 * Scratch: chunk-start states (ceil(n/c), Dk, Dv) | E, A, P (c, c) | U, V', dV', dRv (c, Dv) |
 *          W, dRk (c, Dk) | eG, eL, dG (c) | dS, dS_in (Dk, Dv). */

size_t qref_vjp_gdn_chunked_scratch(int n, int chunk, int Dk, int Dv)
{
    const size_t c = (size_t)chunk, nch = ((size_t)n + c - 1) / c, SS = (size_t)Dk * Dv;
    return nch * SS + 3 * c * c + 4 * c * (size_t)Dv + 2 * c * (size_t)Dk + 3 * c + 2 * SS;
}

typedef struct {
    const qref_real *q, *k, *v, *g, *beta;      /* offset to the chunk's first token */
    int L, h, kh, Hk, Hv, Dk, Dv, c;
    qref_real *E, *A, *P, *U, *Vp, *dVp, *dRv, *W, *dRk, *eG, *eL, *dG, *dS, *dSin;
} chunk_ctx;

#define QI(x, i) ((x)->q + ((size_t)(i) * (x)->Hk + (x)->kh) * (x)->Dk)
#define KI(x, i) ((x)->k + ((size_t)(i) * (x)->Hk + (x)->kh) * (x)->Dk)
#define VI(x, i) ((x)->v + ((size_t)(i) * (x)->Hv + (x)->h) * (x)->Dv)
#define GI(x, i) ((double)(x)->g[(size_t)(i) * (x)->Hv + (x)->h])
#define BI(x, i) ((double)(x)->beta[(size_t)(i) * (x)->Hv + (x)->h])

static double dot(const qref_real *a, const qref_real *b, int d)
{
    double s = 0;
    for (int i = 0; i < d; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* Fills E, A, P, U, W, V', eG, eL for the chunk from its incoming state S (Dk, Dv); when
 * S_out is not NULL, also writes the outgoing state there. */
static void chunk_forward(chunk_ctx *x, const qref_real *S, qref_real *S_out)
{
    const int L = x->L, c = x->c, Dk = x->Dk, Dv = x->Dv;
    double G = 0;
    for (int i = 0; i < L; i++) {
        double d = 0;                                       /* G_i - G_j, summed backwards */
        for (int j = i; j >= 0; j--) {
            x->E[(size_t)i * c + j] = (qref_real)exp(d);
            d += GI(x, j);
        }
        G += GI(x, i);
        x->eG[i] = (qref_real)exp(G);
    }
    double r = 0;                                           /* G_L - G_i */
    for (int i = L - 1; i >= 0; i--) {
        x->eL[i] = (qref_real)exp(r);
        r += GI(x, i);
    }
    for (int i = 0; i < L; i++) {
        const double bi = BI(x, i);
        for (int j = 0; j <= i; j++) {
            const double e = x->E[(size_t)i * c + j];
            x->A[(size_t)i * c + j] = j < i ? (qref_real)(bi * dot(KI(x, i), KI(x, j), Dk) * e) : 0;
            x->P[(size_t)i * c + j] = (qref_real)(dot(QI(x, i), KI(x, j), Dk) * e);
        }
    }
    /* forward substitution with the unit lower-triangular I + A */
    for (int i = 0; i < L; i++) {
        const double bi = BI(x, i), eg = x->eG[i];
        for (int b = 0; b < Dv; b++) {
            double a = bi * VI(x, i)[b];
            for (int j = 0; j < i; j++)
                a -= (double)x->A[(size_t)i * c + j] * x->U[(size_t)j * Dv + b];
            x->U[(size_t)i * Dv + b] = (qref_real)a;
        }
        for (int b = 0; b < Dk; b++) {
            double a = bi * eg * KI(x, i)[b];
            for (int j = 0; j < i; j++)
                a -= (double)x->A[(size_t)i * c + j] * x->W[(size_t)j * Dk + b];
            x->W[(size_t)i * Dk + b] = (qref_real)a;
        }
    }
    /* V' = U - W S */
    for (int i = 0; i < L; i++)
        for (int b = 0; b < Dv; b++) {
            double a = x->U[(size_t)i * Dv + b];
            for (int j = 0; j < Dk; j++)
                a -= (double)x->W[(size_t)i * Dk + j] * S[(size_t)j * Dv + b];
            x->Vp[(size_t)i * Dv + b] = (qref_real)a;
        }
    if (S_out) {
        const double eGL = x->eG[L - 1];
        for (int a = 0; a < Dk; a++)
            for (int b = 0; b < Dv; b++) {
                double s = eGL * S[(size_t)a * Dv + b];
                for (int i = 0; i < L; i++)
                    s += (double)x->eL[i] * KI(x, i)[a] * x->Vp[(size_t)i * Dv + b];
                S_out[(size_t)a * Dv + b] = (qref_real)s;
            }
    }
}

/* Backward of one chunk (after chunk_forward from the same S): x->dS holds dS_out on entry and
 * dS_in on return. gO (L rows, stride Hv*Dv) may be NULL. Accumulates dq, dk; writes dv, dg,
 * dbeta of the chunk's tokens (all offset to the chunk). */
static void chunk_backward(chunk_ctx *x, const qref_real *S, const qref_real *gO, qref_real *dq, qref_real *dk,
                           qref_real *dv, qref_real *dg, qref_real *dbeta, const qref_vjp_faults *f)
{
    const int L = x->L, c = x->c, Dk = x->Dk, Dv = x->Dv, Hv = x->Hv, Hk = x->Hk, h = x->h, kh = x->kh;
    const size_t ldo = (size_t)Hv * Dv;
    const double eGL = x->eG[L - 1];
#define DQI(i) (dq + ((size_t)(i) * Hk + kh) * Dk)
#define DKI(i) (dk + ((size_t)(i) * Hk + kh) * Dk)
#define GOI(i) (gO + (size_t)(i) * ldo + (size_t)h * Dv)
    for (int i = 0; i < L; i++)
        x->dG[i] = 0;
    double dGL = 0;

    /* dV' and the state-update terms */
    for (int j = 0; j < L; j++) {
        const qref_real *kj = KI(x, j);
        for (int b = 0; b < Dv; b++) {
            double a = 0;
            for (int i = j; gO && i < L; i++)
                a += (double)x->P[(size_t)i * c + j] * GOI(i)[b];
            double s = 0;
            for (int e = 0; e < Dk; e++)
                s += (double)kj[e] * x->dS[(size_t)e * Dv + b];
            x->dVp[(size_t)j * Dv + b] = (qref_real)(a + x->eL[j] * s);
        }
        /* Kd_j = eL_j k_j: dKd_j = dS_out V'_j */
        double kdk = 0;
        qref_real *dkj = DKI(j);
        for (int e = 0; e < Dk; e++) {
            const double dkd = dot(x->dS + (size_t)e * Dv, x->Vp + (size_t)j * Dv, Dv);
            dkj[e] = (qref_real)(dkj[e] + x->eL[j] * dkd);
            kdk += (double)kj[e] * dkd;
        }
        const double t = x->eL[j] * kdk;
        dGL += t;
        x->dG[j] = (qref_real)(x->dG[j] - t);
    }
    /* P = (q k^T) . E */
    for (int i = 0; gO && i < L; i++) {
        double dGi = 0;
        qref_real *dqi = DQI(i);
        const qref_real *qi = QI(x, i);
        for (int j = 0; j <= i; j++) {
            const double dP = dot(GOI(i), x->Vp + (size_t)j * Dv, Dv);
            const double p = dP * x->P[(size_t)i * c + j];
            dGi += p;
            x->dG[j] = (qref_real)(x->dG[j] - p);
            const double dqk = dP * x->E[(size_t)i * c + j];
            const qref_real *kj = KI(x, j);
            qref_real *dkj = DKI(j);
            for (int e = 0; e < Dk; e++) {
                dqi[e] = (qref_real)(dqi[e] + dqk * kj[e]);
                dkj[e] = (qref_real)(dkj[e] + dqk * qi[e]);
            }
        }
        /* X_i = eG_i q_i reads the incoming state: dX_i = S dO_i */
        double qdx = 0;
        for (int e = 0; e < Dk; e++) {
            const double dx = dot(S + (size_t)e * Dv, GOI(i), Dv);
            dqi[e] = (qref_real)(dqi[e] + x->eG[i] * dx);
            qdx += (double)qi[e] * dx;
        }
        dGi += x->eG[i] * qdx;
        x->dG[i] = (qref_real)(x->dG[i] + dGi);
    }
    /* incoming state: dS_in = eGL dS_out + sum_i X_i dO_i^T - W^T dV'; and the chunk decay's dG */
    double sds = 0;
    for (size_t e = 0; e < (size_t)Dk * Dv; e++)
        sds += (double)S[e] * x->dS[e];
    dGL += eGL * sds;
    for (int a = 0; a < Dk; a++)
        for (int b = 0; b < Dv; b++) {
            double s = (f->gdn_no_decay ? 1.0 : eGL) * x->dS[(size_t)a * Dv + b];
            for (int i = 0; i < L; i++) {
                if (gO)
                    s += (double)x->eG[i] * QI(x, i)[a] * GOI(i)[b];
                s -= (double)x->W[(size_t)i * Dk + a] * x->dVp[(size_t)i * Dv + b];
            }
            x->dSin[(size_t)a * Dv + b] = (qref_real)s;
        }
    /* dU = dV'; dW = -dV' S^T; back substitution through (I + A)^T */
    for (int i = L - 1; i >= 0; i--) {
        for (int b = 0; b < Dv; b++) {
            double a = x->dVp[(size_t)i * Dv + b];
            for (int j = i + 1; j < L; j++)
                a -= (double)x->A[(size_t)j * c + i] * x->dRv[(size_t)j * Dv + b];
            x->dRv[(size_t)i * Dv + b] = (qref_real)a;
        }
        for (int e = 0; e < Dk; e++) {
            double a = -dot(x->dVp + (size_t)i * Dv, S + (size_t)e * Dv, Dv);
            for (int j = i + 1; j < L; j++)
                a -= (double)x->A[(size_t)j * c + i] * x->dRk[(size_t)j * Dk + e];
            x->dRk[(size_t)i * Dk + e] = (qref_real)a;
        }
    }
    for (int i = 0; i < L; i++) {
        const double bi = BI(x, i), eg = x->eG[i];
        const qref_real *ki = KI(x, i), *vi = VI(x, i);
        qref_real *dki = DKI(i);
        double db = 0, dGi = 0;
        /* A_ij = beta_i (k_i . k_j) E_ij, j < i */
        for (int j = 0; j < i; j++) {
            const double dA = -(dot(x->dRv + (size_t)i * Dv, x->U + (size_t)j * Dv, Dv) +
                                dot(x->dRk + (size_t)i * Dk, x->W + (size_t)j * Dk, Dk));
            const double a = dA * x->A[(size_t)i * c + j];
            dGi += a;
            x->dG[j] = (qref_real)(x->dG[j] - a);
            const double e = x->E[(size_t)i * c + j];
            const qref_real *kj = KI(x, j);
            db += dA * dot(ki, kj, Dk) * e;
            const double dkk = dA * bi * e;
            qref_real *dkj = DKI(j);
            for (int d = 0; d < Dk; d++) {
                dki[d] = (qref_real)(dki[d] + dkk * kj[d]);
                dkj[d] = (qref_real)(dkj[d] + dkk * ki[d]);
            }
        }
        /* right-hand sides beta v and beta exp(G) k */
        db += dot(x->dRv + (size_t)i * Dv, vi, Dv);
        for (int b = 0; b < Dv; b++)
            dv[(size_t)i * ldo + (size_t)h * Dv + b] = (qref_real)(bi * x->dRv[(size_t)i * Dv + b]);
        const double rk = dot(x->dRk + (size_t)i * Dk, ki, Dk);
        db += eg * rk;
        dGi += bi * eg * rk;
        for (int d = 0; d < Dk; d++)
            dki[d] = (qref_real)(dki[d] + bi * eg * x->dRk[(size_t)i * Dk + d]);
        dbeta[(size_t)i * Hv + h] = (qref_real)db;
        x->dG[i] = (qref_real)(x->dG[i] + dGi);
    }
    x->dG[L - 1] = (qref_real)(x->dG[L - 1] + dGL);
    /* G_i = g_0 + ... + g_i: dg_t = sum_{i >= t} dG_i */
    double acc = 0;
    for (int t = L - 1; t >= 0; t--) {
        acc += x->dG[t];
        dg[(size_t)t * Hv + h] = (qref_real)acc;
    }
    memcpy(x->dS, x->dSin, (size_t)Dk * Dv * sizeof *x->dS);
#undef DQI
#undef DKI
#undef GOI
}

void qref__vjp_gdn_chunked(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                           qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                           const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                           const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                           int Dv, int chunk, qref_real *scratch, const qref_vjp_faults *f)
{
    assert(Hk > 0 && Hv % Hk == 0 && chunk > 0 && n >= 0);
    f = f ? f : &no_faults;
    const int rep = Hv / Hk, nch = (n + chunk - 1) / chunk;
    const size_t c = (size_t)chunk, SS = (size_t)Dk * Dv;
    chunk_ctx x = {.Hk = Hk, .Hv = Hv, .Dk = Dk, .Dv = Dv, .c = chunk};
    qref_real *states = scratch;                /* (nch, Dk, Dv) */
    x.E = states + (size_t)nch * SS;            /* (c, c) */
    x.A = x.E + c * c;                          /* (c, c) */
    x.P = x.A + c * c;                          /* (c, c) */
    x.U = x.P + c * c;                          /* (c, Dv) */
    x.Vp = x.U + c * Dv;                        /* (c, Dv) */
    x.dVp = x.Vp + c * Dv;                      /* (c, Dv) */
    x.dRv = x.dVp + c * Dv;                     /* (c, Dv) */
    x.W = x.dRv + c * Dv;                       /* (c, Dk) */
    x.dRk = x.W + c * Dk;                       /* (c, Dk) */
    x.eG = x.dRk + c * Dk;                      /* (c) */
    x.eL = x.eG + c;                            /* (c) */
    x.dG = x.eL + c;                            /* (c) */
    x.dS = x.dG + c;                            /* (Dk, Dv) */
    x.dSin = x.dS + SS;                         /* (Dk, Dv) */
    memset(dq, 0, (size_t)n * Hk * Dk * sizeof *dq);
    memset(dk, 0, (size_t)n * Hk * Dk * sizeof *dk);

    for (int h = 0; h < Hv; h++) {
        x.h = h, x.kh = h / rep;
        /* forward sweep: the state at every chunk start */
        memcpy(states, state0 + (size_t)h * SS, SS * sizeof *states);
        for (int ci = 0; ci + 1 < nch; ci++) {
            const int t0 = ci * chunk;
            x.L = n - t0 < chunk ? n - t0 : chunk;
            x.q = q + (size_t)t0 * Hk * Dk, x.k = k + (size_t)t0 * Hk * Dk, x.v = v + (size_t)t0 * Hv * Dv;
            x.g = g + (size_t)t0 * Hv, x.beta = beta + (size_t)t0 * Hv;
            chunk_forward(&x, states + (size_t)ci * SS, states + (size_t)(ci + 1) * SS);
        }
        /* backward sweep, last chunk first */
        if (d_state)
            memcpy(x.dS, d_state + (size_t)h * SS, SS * sizeof *x.dS);
        else
            memset(x.dS, 0, SS * sizeof *x.dS);
        for (int ci = nch - 1; ci >= 0; ci--) {
            const int t0 = ci * chunk;
            x.L = n - t0 < chunk ? n - t0 : chunk;
            x.q = q + (size_t)t0 * Hk * Dk, x.k = k + (size_t)t0 * Hk * Dk, x.v = v + (size_t)t0 * Hv * Dv;
            x.g = g + (size_t)t0 * Hv, x.beta = beta + (size_t)t0 * Hv;
            const qref_real *S = states + (size_t)ci * SS;
            chunk_forward(&x, S, NULL);
            chunk_backward(&x, S, d_out ? d_out + (size_t)t0 * Hv * Dv : NULL, dq + (size_t)t0 * Hk * Dk,
                           dk + (size_t)t0 * Hk * Dk, dv + (size_t)t0 * Hv * Dv, dg + (size_t)t0 * Hv,
                           dbeta + (size_t)t0 * Hv, f);
        }
        memcpy(dstate0 + (size_t)h * SS, x.dS, SS * sizeof *x.dS);
    }
}

void qref_vjp_gdn_chunked(qref_real *dq, qref_real *dk, qref_real *dv, qref_real *dg, qref_real *dbeta,
                          qref_real *dstate0, const qref_real *d_out, const qref_real *d_state,
                          const qref_real *q, const qref_real *k, const qref_real *v, const qref_real *g,
                          const qref_real *beta, const qref_real *state0, int n, int Hk, int Hv, int Dk,
                          int Dv, int chunk, qref_real *scratch)
{
    qref__vjp_gdn_chunked(dq, dk, dv, dg, dbeta, dstate0, d_out, d_state, q, k, v, g, beta, state0, n, Hk, Hv,
                          Dk, Dv, chunk, scratch, NULL);
}
