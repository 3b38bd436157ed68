"""Data loading: image files -> Samples (sources) -> arrays (prepare); input signals; Fashion-MNIST.

Modules: images (load_rgb, fit_square), sources (photo_folder, pair_files, paired_folders),
labels ('path', 'path:N', CSV), signals (lowres, hed, canny), prepare (prepare, save/load),
fashion (load_fashion, fashion_photos), notice (DataWarning). Nothing heavy is imported here.
"""
