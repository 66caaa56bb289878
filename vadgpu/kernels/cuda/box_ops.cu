// Perturbations inside an object's box, one thread per pixel (n, t, y, x) handling all C channels.
// Boxes are (N, T, 4) normalised x1, y1, x2, y2; a pixel belongs to a box when its centre
// ((x + 0.5) / W, (y + 0.5) / H) lies in [x1, x2) x [y1, y2). The torch reference (torch_ops.py) uses the same
// rule and the same order of float operations; compiled with --fmad=false so the results round alike.

struct Pixel {
    long long n;
    int t, y, x;
};

__device__ __forceinline__ Pixel pixel_of(long long i, int T, int H, int W) {
    Pixel p;
    p.x = (int)(i % W);
    long long rest = i / W;
    p.y = (int)(rest % H);
    rest /= H;
    p.t = (int)(rest % T);
    p.n = rest / T;
    return p;
}

__device__ __forceinline__ long long clip_offset(Pixel p, int c, int C, int T, int H, int W) {
    return (((p.n * C + c) * T + p.t) * (long long)H + p.y) * W + p.x;
}

// Patch pasting, fused: the sub-box of the object's box, the bilinear resize of the patch into it and the
// radial blend (weight 1 at the centre, 0 on the border: 0.5 * (1 + cos(pi * r))) in one pass; the patch is
// only ever sampled where it is needed, never resized into a temporary.
extern "C" __global__ void paste_patches(const float* __restrict__ clips,         // (N, C, T, H, W)
                                         const float* __restrict__ boxes,         // (N, T, 4)
                                         const unsigned char* __restrict__ valid, // (N,)
                                         const float* __restrict__ patches,       // (P, C, ph, pw)
                                         const long long* __restrict__ patch_index, // (N,)
                                         const float* __restrict__ subbox,        // (N, 4): ox, oy, fw, fh
                                         float* __restrict__ out,                 // (N, C, T, H, W)
                                         float* __restrict__ mask,                // (N, 1, T, H, W)
                                         long long total, int C, int T, int H, int W, int ph, int pw) {
    const float pi = 3.14159265358979323846f;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        Pixel p = pixel_of(i, T, H, W);
        const float* box = boxes + (p.n * T + p.t) * 4;
        const float* sub = subbox + p.n * 4;
        float bw = box[2] - box[0];
        float bh = box[3] - box[1];
        float sx1 = box[0] + sub[0] * bw;
        float sy1 = box[1] + sub[1] * bh;
        float sx2 = sx1 + sub[2] * bw;
        float sy2 = sy1 + sub[3] * bh;
        float u = ((float)p.x + 0.5f) / (float)W;
        float v = ((float)p.y + 0.5f) / (float)H;
        bool inside = valid[p.n] != 0 && u >= sx1 && u < sx2 && v >= sy1 && v < sy2;
        float weight = 0.0f;
        float a = 0.5f, b = 0.5f;
        if (inside) {
            a = (u - sx1) / (sx2 - sx1);
            b = (v - sy1) / (sy2 - sy1);
            float da = 2.0f * a - 1.0f;
            float db = 2.0f * b - 1.0f;
            float r = sqrtf(da * da + db * db);
            if (r < 1.0f) weight = 0.5f * (1.0f + cosf(pi * r));
        }
        bool changed = inside && weight > 0.0f;
        mask[i] = changed ? 1.0f : 0.0f;
        if (!changed) {
            for (int c = 0; c < C; ++c) {
                long long o = clip_offset(p, c, C, T, H, W);
                out[o] = clips[o];
            }
            continue;
        }
        // Bilinear sample with half-pixel centres (align_corners=False), clamped at the patch border.
        float px = fminf(fmaxf(a * (float)pw - 0.5f, 0.0f), (float)(pw - 1));
        float py = fminf(fmaxf(b * (float)ph - 0.5f, 0.0f), (float)(ph - 1));
        int x0 = (int)floorf(px);
        int y0 = (int)floorf(py);
        int x1 = min(x0 + 1, pw - 1);
        int y1 = min(y0 + 1, ph - 1);
        float fx = px - (float)x0;
        float fy = py - (float)y0;
        const float* patch = patches + patch_index[p.n] * (long long)C * ph * pw;
        for (int c = 0; c < C; ++c) {
            const float* plane = patch + (long long)c * ph * pw;
            float top = (1.0f - fx) * plane[y0 * pw + x0] + fx * plane[y0 * pw + x1];
            float bottom = (1.0f - fx) * plane[y1 * pw + x0] + fx * plane[y1 * pw + x1];
            float value = (1.0f - fy) * top + fy * bottom;
            long long o = clip_offset(p, c, C, T, H, W);
            float x = clips[o];
            out[o] = x + weight * (value - x);
        }
    }
}

// DDL blend, fused: the box mask M and X_A = X + M * (w * (A - X)) (= (1 - M) X + M ((1 - w) X + w A)) in one
// pass. w = sigmoid(l) is read from device memory so the learnable logit never visits the host; the backward
// for l is done in torch (cupy_ops._DdlBlendFunction).
extern "C" __global__ void ddl_blend(const float* __restrict__ clips,         // (N, C, T, H, W)
                                     const float* __restrict__ noise,         // (N, C, T, H, W), U(0, 1)
                                     const float* __restrict__ boxes,         // (N, T, 4)
                                     const unsigned char* __restrict__ valid, // (N,)
                                     const float* __restrict__ weight,        // (1,): sigmoid(l)
                                     float* __restrict__ out,                 // (N, C, T, H, W)
                                     float* __restrict__ mask,                // (N, 1, T, H, W)
                                     long long total, int C, int T, int H, int W) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total;
         i += (long long)gridDim.x * blockDim.x) {
        Pixel p = pixel_of(i, T, H, W);
        const float* box = boxes + (p.n * T + p.t) * 4;
        float u = ((float)p.x + 0.5f) / (float)W;
        float v = ((float)p.y + 0.5f) / (float)H;
        bool inside = valid[p.n] != 0 && u >= box[0] && u < box[2] && v >= box[1] && v < box[3];
        float m = inside ? 1.0f : 0.0f;
        mask[i] = m;
        float w = weight[0];
        for (int c = 0; c < C; ++c) {
            long long o = clip_offset(p, c, C, T, H, W);
            float x = clips[o];
            out[o] = x + m * (w * (noise[o] - x));
        }
    }
}
