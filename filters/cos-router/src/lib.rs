//! cos-router: class-of-service routing and sticky multivariate experiments.
//! (Skeleton; being written.)
