/*
 * Native reference of the dense pass (docs/model.md section 4 step 1), for npm run bench:engine: the same
 * loop as the engines', z_i = sum_j K_ij a_j (cos, sin), q_i = sum_j K_ij a_j, over one stored kernel
 * shared by a batch of simulations, rows split between OpenMP threads. Two loop orders, the faster one
 * reported: per simulation a dot product over each row (vectorised over j), and the batch as the columns of
 * a matrix product (vectorised over the simulations, each kernel entry loaded once for the whole batch).
 * Each order gets half of SECONDS, timed in REPEATS windows (default 1), the fastest window reported.
 * Built by the benchmark with the system's compiler (cc -O3 -march=native -fopenmp); prints one JSON line.
 *
 *   dense K BATCH SECONDS f32|f64 [REPEATS]
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define DEFINE_PASS(NAME, T)                                                                \
  static void NAME(const T *K, int k, int batch, T *const *in, T *const *out) {             \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int i = 0; i < k; i++) {                                                           \
      const T *row = K + (size_t)i * k;                                                     \
      for (int s = 0; s < batch; s++) {                                                     \
        const T *ac = in[3 * s], *as = in[3 * s + 1], *a = in[3 * s + 2];                   \
        T zr = 0, zi = 0, q = 0;                                                            \
        _Pragma("omp simd reduction(+ : zr, zi, q)")                                        \
        for (int j = 0; j < k; j++) {                                                       \
          zr += row[j] * ac[j];                                                             \
          zi += row[j] * as[j];                                                             \
          q += row[j] * a[j];                                                               \
        }                                                                                   \
        out[3 * s][i] = zr;                                                                 \
        out[3 * s + 1][i] = zi;                                                             \
        out[3 * s + 2][i] = q;                                                              \
      }                                                                                     \
    }                                                                                       \
  }

DEFINE_PASS(pass32, float)
DEFINE_PASS(pass64, double)

/*
 * The batch as columns: in[v] holds a_j (cos, sin, plain) of every simulation at [j * batch + s]; sixteen
 * simulations at a time, their sums in registers.
 */
#define BLOCK 16
#define DEFINE_GEMM(NAME, T)                                                                \
  static void NAME(const T *K, int k, int batch, T *const *in, T *const *out) {             \
    _Pragma("omp parallel for schedule(static)")                                            \
    for (int i = 0; i < k; i++) {                                                           \
      const T *row = K + (size_t)i * k;                                                     \
      for (int s0 = 0; s0 < batch; s0 += BLOCK) {                                           \
        if (batch - s0 < BLOCK) {                                                           \
          for (int s = s0; s < batch; s++) {                                                \
            T zr = 0, zi = 0, q = 0;                                                        \
            for (int j = 0; j < k; j++) {                                                   \
              size_t at = (size_t)j * batch + s;                                            \
              zr += row[j] * in[0][at];                                                     \
              zi += row[j] * in[1][at];                                                     \
              q += row[j] * in[2][at];                                                      \
            }                                                                               \
            out[0][(size_t)i * batch + s] = zr;                                             \
            out[1][(size_t)i * batch + s] = zi;                                             \
            out[2][(size_t)i * batch + s] = q;                                              \
          }                                                                                 \
          break;                                                                            \
        }                                                                                   \
        T zr[BLOCK] = {0}, zi[BLOCK] = {0}, q[BLOCK] = {0};                                 \
        for (int j = 0; j < k; j++) {                                                       \
          const T kij = row[j];                                                             \
          const size_t at = (size_t)j * batch + s0;                                         \
          const T *c = in[0] + at, *sn = in[1] + at, *m = in[2] + at;                       \
          _Pragma("omp simd")                                                               \
          for (int s = 0; s < BLOCK; s++) {                                                 \
            zr[s] += kij * c[s];                                                            \
            zi[s] += kij * sn[s];                                                           \
            q[s] += kij * m[s];                                                             \
          }                                                                                 \
        }                                                                                   \
        for (int s = 0; s < BLOCK; s++) {                                                   \
          out[0][(size_t)i * batch + s0 + s] = zr[s];                                       \
          out[1][(size_t)i * batch + s0 + s] = zi[s];                                       \
          out[2][(size_t)i * batch + s0 + s] = q[s];                                        \
        }                                                                                   \
      }                                                                                     \
    }                                                                                       \
  }

DEFINE_GEMM(gemm32, float)
DEFINE_GEMM(gemm64, double)

/* Vectors of `length` values each (3 * batch of k, or 3 of k * batch for the matrix product). */
#define RUN(T, PASS, VECTORS, LENGTH)                                                       \
  do {                                                                                      \
    T *K = malloc(sizeof(T) * (size_t)k * k);                                               \
    T **in = malloc(sizeof(T *) * (VECTORS)), **out = malloc(sizeof(T *) * (VECTORS));      \
    for (size_t i = 0; i < (size_t)k * k; i++) K[i] = (T)rand() / RAND_MAX;                 \
    for (int v = 0; v < (VECTORS); v++) {                                                   \
      in[v] = malloc(sizeof(T) * (LENGTH));                                                 \
      out[v] = malloc(sizeof(T) * (LENGTH));                                                \
      for (size_t j = 0; j < (size_t)(LENGTH); j++) in[v][j] = (T)rand() / RAND_MAX;        \
    }                                                                                       \
    PASS(K, k, batch, in, out);                                                             \
    for (int r = 0; r < repeats; r++) {                                                     \
      long n = 0;                                                                           \
      double t0 = now(), t;                                                                 \
      do {                                                                                  \
        PASS(K, k, batch, in, out);                                                         \
        n++;                                                                                \
      } while ((t = now() - t0) < seconds / repeats);                                       \
      if (n * batch / t > best) {                                                           \
        best = n * batch / t;                                                               \
        order = #PASS;                                                                      \
      }                                                                                     \
    }                                                                                       \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) {
    fprintf(stderr, "usage: dense K BATCH SECONDS f32|f64 [REPEATS]\n");
    return 2;
  }
  int k = atoi(argv[1]), batch = atoi(argv[2]);
  double seconds = atof(argv[3]) / 2, best = 0;
  int repeats = argc == 6 ? atoi(argv[5]) : 1;
  if (repeats < 1) repeats = 1;
  const char *order = "";
  if (strcmp(argv[4], "f32") == 0) {
    RUN(float, pass32, 3 * batch, k);
    RUN(float, gemm32, 3, (size_t)k * batch);
  } else {
    RUN(double, pass64, 3 * batch, k);
    RUN(double, gemm64, 3, (size_t)k * batch);
  }
  printf("{\"k\":%d,\"batch\":%d,\"threads\":%d,\"order\":\"%s\",\"simStepsPerSecond\":%.2f}\n", k, batch, omp_get_max_threads(), order, best);
  return 0;
}
