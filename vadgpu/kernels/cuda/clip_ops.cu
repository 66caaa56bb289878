// Whole-clip perturbations on (N, C, T, H, W) float32 clips, contiguous.
// Random parameters come from torch (see vadgpu/kernels/params.py) so these kernels and the torch reference
// produce the same values; compiled with --fmad=false so the float operations round like torch's.

// out[n, c, t] = src[n, c, index[n, t]]: frame skipping (index from the skip table) and motion shuffling
// (index = a permutation) are both one gather along the time axis.
extern "C" __global__ void gather_frames(const float* __restrict__ src,       // (N, C, Ts, H, W)
                                         const long long* __restrict__ index, // (N, T), values in [0, Ts)
                                         float* __restrict__ out,             // (N, C, T, H, W)
                                         long long total, int C, int Ts, int T, long long HW) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        long long hw = i % HW;
        long long rest = i / HW;
        int t = (int)(rest % T);
        rest /= T;
        int c = (int)(rest % C);
        long long n = rest / C;
        long long s = index[n * T + t];
        out[i] = src[((n * C + c) * Ts + s) * HW + hw];
    }
}

// out = clamp(x + sigma[n] * z, 0, 1): the add and the clamp in one pass over the clip.
extern "C" __global__ void add_gaussian_noise(const float* __restrict__ clips, // (N, C, T, H, W)
                                              const float* __restrict__ noise, // (N, C, T, H, W), N(0, 1)
                                              const float* __restrict__ sigma, // (N,)
                                              float* __restrict__ out, long long total, long long per_sample) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        float v = clips[i] + sigma[i / per_sample] * noise[i];
        out[i] = fminf(fmaxf(v, 0.0f), 1.0f);
    }
}
