# Pipelines shared by every nucleus dataset config (PanNuke, Kumar, CPM-17,
# synthetic). Augmentations follow upstream PromptNucSeg's albumentations
# lists; nucleus points and the foreground map are derived from the masks
# *after* augmentation (NucleusPointsFromMasks), so they always agree.
# Not reproduced: RandomGridShuffle, ZoomBlur, Superpixels, ElasticTransform
# and RandomSizedCrop (see docs/datasets.md).
backend_args = None

load_steps = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    # mmdet's LoadAnnotations with masks decoded from their RLE runs (same
    # output, ~10x faster on 1000 px tiles with hundreds of nuclei).
    dict(type='LoadNucleusAnnotations', with_bbox=True, with_mask=True),
]
pack_steps = [
    dict(type='NucleusPointsFromMasks'),
    dict(type='PackNucleusInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor', 'flip', 'flip_direction', 'tissue')),
]
# H and V flips with p=0.5 each == none/h/v/both(diagonal) with 1/4 each.
# RandomNucleusFlip is mmdet's RandomFlip with a vectorised mask flip.
flip_step = dict(type='RandomNucleusFlip',
                 prob=[0.25, 0.25, 0.25],
                 direction=['horizontal', 'vertical', 'diagonal'])

# Prompter (upstream prompter config): colour jitter, rot90, downscale,
# blur, noise, flips, shift-scale (no rotation, black border).
prompter_augs = [
    dict(type='RandomColorJitter',
         prob=0.2,
         brightness=0.25,
         contrast=0.25,
         saturation=0.1,
         hue=0.05),
    dict(type='RandomRotate90', prob=0.5),
    dict(type='RandomDownscale', prob=0.15, scale_range=(0.5, 0.5)),
    dict(type='RandomBlur', prob=0.2, blur_limit=(3, 10)),
    dict(type='RandomGaussianNoise', prob=0.25, var_range=(0., 50.)),
    flip_step,
    dict(type='RandomShiftScale',
         prob=0.5,
         max_shift=0.3,
         scale_range=(0.9, 1.1),
         border_val=0),
]
# Segmentor (upstream segmentor config): random 256 crop (a no-op on
# PanNuke), rot90, flips, downscale, blur, noise, colour jitter.
segmentor_crop_size = (256, 256)
segmentor_augs = [
    dict(type='RandomCrop',
         crop_size=segmentor_crop_size,
         allow_negative_crop=True,
         recompute_bbox=True),
    dict(type='RandomRotate90', prob=0.5),
    flip_step,
    dict(type='RandomDownscale', prob=0.15, scale_range=(0.5, 0.5)),
    dict(type='RandomBlur', prob=0.2, blur_limit=(3, 10)),
    dict(type='RandomGaussianNoise', prob=0.25, var_range=(0., 50.)),
    dict(type='RandomColorJitter',
         prob=0.2,
         brightness=0.25,
         contrast=0.25,
         saturation=0.1,
         hue=0.05),
]

train_pipeline = load_steps + prompter_augs + pack_steps
segmentor_train_pipeline = load_steps + segmentor_augs + pack_steps
# Annotations are loaded at test time too: the metrics read the GT masks
# and points from the packed samples.
test_pipeline = load_steps + pack_steps
