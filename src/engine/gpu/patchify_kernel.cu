
extern "C" __global__ void patchify_u8(
    const unsigned char* __restrict__ rgb,       // pages back to back, each h*w*3
    const float* __restrict__ table,             // 3 x 256 normalised values
    const unsigned long long* __restrict__ page_byte_offset,
    const unsigned int* __restrict__ page_row_start,  // n_pages + 1 entries
    const unsigned int* __restrict__ page_width,
    int n_pages, int patch, int merge, int temporal,
    float* __restrict__ out)                     // rows x (3*temporal*patch*patch)
{
    const unsigned int row = blockIdx.x;
    int p = 0;
    while (p + 1 < n_pages && row >= page_row_start[p + 1]) p++;
    const unsigned int local = row - page_row_start[p];
    const unsigned int w = page_width[p];
    const unsigned int gw = w / patch;
    const unsigned int per_block = merge * merge;
    const unsigned int b = local / per_block, inner = local % per_block;
    const unsigned int blocks_w = gw / merge;
    const unsigned int py0 = ((b / blocks_w) * merge + inner / merge) * patch;
    const unsigned int px0 = ((b % blocks_w) * merge + inner % merge) * patch;
    const unsigned char* img = rgb + page_byte_offset[p];
    const int frame = patch * patch;
    const int per_channel = temporal * frame;
    const int dim = 3 * per_channel;
    float* dst = out + (unsigned long long)row * dim;
    for (int e = threadIdx.x; e < dim; e += blockDim.x) {
        const int c = e / per_channel;
        const int pix = (e % per_channel) % frame;
        const int y = pix / patch, x = pix % patch;
        const unsigned char v = img[((unsigned long long)(py0 + y) * w + px0 + x) * 3 + c];
        dst[e] = table[c * 256 + v];
    }
}
